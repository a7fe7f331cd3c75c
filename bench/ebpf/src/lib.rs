#![no_std]
// Library target so sipshield-bench can depend on this crate (for rebuild tracking); the programs are the binary.
