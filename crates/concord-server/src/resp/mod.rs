//! RESP protocol layer (being written).
