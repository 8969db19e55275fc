//! CURP consensus (being written).
