#![no_std]
// Library target so xdp-user can depend on this crate (for rebuild tracking); the program is the binary.
