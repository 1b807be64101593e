//! List parsers (being written).
