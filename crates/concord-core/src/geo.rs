//! Geo as Redis computes it (`geo.c`, `geohash.c`, `geohash_helper.c`): a point is stored as a
//! sorted-set member whose score is its 52-bit interleaved geohash (26 steps over longitude
//! [-180, 180] and latitude [-85.05112878, 85.05112878]), decoded to the centre of its cell;
//! distances are haversine on Redis's earth radius. Same inputs, same bits as Redis.

/// Redis's `EARTH_RADIUS_IN_METERS`.
pub const EARTH_RADIUS_M: f64 = 6_372_797.560_856;
pub const LAT_MIN: f64 = -85.051_128_78;
pub const LAT_MAX: f64 = 85.051_128_78;
pub const LON_MIN: f64 = -180.0;
pub const LON_MAX: f64 = 180.0;
const STEP: u32 = 26;

/// Spread the 32 bits of `x` to the even bit positions of a u64.
fn spread(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `x`, packed.
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// Whether Redis accepts the pair (`GEOADD`, `FROMLONLAT`).
pub fn valid(lon: f64, lat: f64) -> bool {
    (LON_MIN..=LON_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
}

fn encode_in(lon: f64, lat: f64, lon_range: (f64, f64), lat_range: (f64, f64)) -> u64 {
    let scale = (1u64 << STEP) as f64;
    let lat_offset = (lat - lat_range.0) / (lat_range.1 - lat_range.0) * scale;
    let lon_offset = (lon - lon_range.0) / (lon_range.1 - lon_range.0) * scale;
    // Redis casts to uint32 (truncation); the edge value 2^26 stays in 32 bits.
    spread(lat_offset as u32) | (spread(lon_offset as u32) << 1)
}

/// The 52-bit geohash of a valid point (Redis's `geohashEncodeWGS84`), the member's score.
pub fn encode(lon: f64, lat: f64) -> u64 {
    encode_in(lon, lat, (LON_MIN, LON_MAX), (LAT_MIN, LAT_MAX))
}

/// The centre of a geohash's cell, `(lon, lat)` (Redis's `geohashDecodeToLongLatWGS84`).
pub fn decode(bits: u64) -> (f64, f64) {
    let scale = (1u64 << STEP) as f64;
    let ilat = f64::from(squash(bits));
    let ilon = f64::from(squash(bits >> 1));
    let lat_min = LAT_MIN + (ilat / scale) * (LAT_MAX - LAT_MIN);
    let lat_max = LAT_MIN + ((ilat + 1.0) / scale) * (LAT_MAX - LAT_MIN);
    let lon_min = LON_MIN + (ilon / scale) * (LON_MAX - LON_MIN);
    let lon_max = LON_MIN + ((ilon + 1.0) / scale) * (LON_MAX - LON_MIN);
    let lon = ((lon_min + lon_max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((lat_min + lat_max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// The point a sorted-set score stands for, if it is a geohash.
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    if !(0.0..(1u64 << 52) as f64).contains(&score) {
        return None;
    }
    Some(decode(score as u64))
}

/// The 11-character geohash string `GEOHASH` answers (standard latitude range [-90, 90]).
pub fn hash_string(score: f64) -> Option<String> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode_score(score)?;
    let bits = encode_in(lon, lat, (-180.0, 180.0), (-90.0, 90.0));
    Some(
        (0..11)
            .map(|i| {
                let idx = if i == 10 {
                    0
                } else {
                    (bits >> (52 - (i + 1) * 5)) & 0x1f
                };
                ALPHABET[idx as usize] as char
            })
            .collect(),
    )
}

/// Haversine distance in meters (Redis's `geohashGetDistance`).
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lat1r, lon1r, lat2r, lon2r) = (
        lat1.to_radians(),
        lon1.to_radians(),
        lat2.to_radians(),
        lon2.to_radians(),
    );
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return EARTH_RADIUS_M * (lat2r - lat1r).abs();
    }
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

/// The distance from the centre `(lon, lat)` to a point inside a `width × height` meter box
/// around it, or `None` outside (Redis's `geohashGetDistanceIfInRectangle`).
pub fn distance_in_box(width_m: f64, height_m: f64, lon: f64, lat: f64, plon: f64, plat: f64) -> Option<f64> {
    let lat_distance = EARTH_RADIUS_M * (plat.to_radians() - lat.to_radians()).abs();
    if lat_distance > height_m / 2.0 {
        return None;
    }
    if distance(plon, plat, lon, plat) > width_m / 2.0 {
        return None;
    }
    Some(distance(lon, lat, plon, plat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis() {
        // GEOADD Sicily 13.361389 38.115556 "Palermo" 15.087269 37.502669 "Catania"
        let palermo = encode(13.361389, 38.115556);
        let catania = encode(15.087269, 37.502669);
        assert_eq!(palermo, 3479099956230698);
        assert_eq!(catania, 3479447370796909);
        let (lon, lat) = decode(palermo);
        // Redis's GEOPOS text (`%.17Lf`) reads back as exactly these doubles.
        assert_eq!(lon, "13.36138933897018433".parse::<f64>().unwrap());
        assert_eq!(lat, "38.11555639549629859".parse::<f64>().unwrap());
        let (clon, clat) = decode(catania);
        assert_eq!(format!("{:.4}", distance(lon, lat, clon, clat)), "166274.1516");
        assert_eq!(hash_string(palermo as f64).unwrap(), "sqc8b49rny0");
        assert_eq!(hash_string(catania as f64).unwrap(), "sqdtr74hyu0");
    }
}
