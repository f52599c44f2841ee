//! Types shared by the XDP program and the control plane, and the pure logic
//! both sides (and host tests) rely on.
//!
//! Everything in [`abi`] is a kernel/userspace ABI: `#[repr(C)]`, fixed-width,
//! explicit padding, addresses and ports in network byte order.
#![no_std]

#[cfg(feature = "user")]
extern crate std;

pub mod abi;
pub mod csum;
pub mod entries;
pub mod hash;
mod reason;
pub mod tcp;

#[cfg(feature = "user")]
pub mod maglev;
#[cfg(feature = "user")]
pub mod sh;
#[cfg(feature = "user")]
pub mod wrr;
