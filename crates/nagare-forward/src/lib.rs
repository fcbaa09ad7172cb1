//! Forward protocol v1 (and v1.5 additions) without sockets: a streaming server-side
//! [`Decoder`], ack encoding, the `<security>` handshake state machine, and client-side
//! encoders.
//!
//! * [`decoder`]: bytes in, [`Request`]s out; every event mode becomes a canonical
//!   [`Batch`] (Fluentd's chunk format), borrowed when it arrived canonical; consecutive
//!   Message requests already buffered are coalesced into one batch.
//! * [`ack`]: `{"ack": <chunk option>}` in msgpack or JSON.
//! * [`handshake`]: HELO / PING / PONG with the spec's digests, server and client side.
//! * [`client`]: PackedForward (as Fluentd's out_forward writes it), Forward and Message.
//! * [`compress`]: bounded gzip (multi-member) and zstd decompression.
//!
//! Errors ([`ForwardError`]) are fatal for the connection: the caller closes it without an
//! ack, as Fluentd does, and the client retries.

pub mod ack;
pub mod client;
pub mod compress;
pub mod decoder;
pub mod error;
mod framing;
pub mod handshake;
pub mod json;

pub use ack::{AckError, AckId, decode_ack, encode_ack};
pub use client::{
    Compression, chunk_option_for, encode_forward, encode_message, encode_packed_forward,
};
pub use decoder::{Batch, Decoder, DecoderConfig, Encoding, Frame, Mode, Request};
pub use error::ForwardError;
pub use handshake::{HandshakeError, Security, ServerHandshake};

#[cfg(test)]
mod tests;
