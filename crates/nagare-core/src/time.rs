//! [`EventTime`]: Fluentd's event timestamp and its msgpack ext 0 encoding.

use crate::msgpack::{Head, MsgpackError, read_head, value_len};

/// The msgpack extension type of an EventTime.
pub const EVENT_TIME_EXT: i8 = 0;

/// An event timestamp: seconds and nanoseconds since the Unix epoch, both unsigned 32-bit as
/// Fluentd packs them (`[sec, nsec].pack('NN')`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventTime {
    /// Seconds since the epoch.
    pub sec: u32,
    /// Nanoseconds within the second (not range-checked, as in Fluentd).
    pub nsec: u32,
}

/// Why a value could not be read as an event time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The bytes are not a complete msgpack value.
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    /// A valid msgpack value of the wrong type (float, string, ext of another type...).
    #[error("event time must be an integer or EventTime (ext 0, 8 bytes), got {0}")]
    WrongType(&'static str),
}

impl EventTime {
    /// Builds a time from seconds and nanoseconds.
    pub const fn new(sec: u32, nsec: u32) -> Self {
        EventTime { sec, nsec }
    }

    /// The current wall-clock time (times before the epoch or after 2106 saturate).
    pub fn now() -> Self {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => EventTime {
                sec: u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(_) => EventTime::default(),
        }
    }

    /// A time from an integer as Fluentd packs it: the value truncated to 32 bits, as
    /// `pack('N')` does.
    pub const fn from_int(v: i128) -> Self {
        EventTime {
            sec: v as u32,
            nsec: 0,
        }
    }

    /// Whether Fluentd would replace this time with "now" (`time.to_i == 0`).
    pub const fn is_zero(&self) -> bool {
        self.sec == 0
    }

    /// The msgpack encoding: `D7 00 sec nsec` (fixext8, type 0, big-endian).
    pub fn encode(&self) -> [u8; 10] {
        let mut b = [0u8; 10];
        b[0] = 0xd7;
        b[1] = 0x00;
        b[2..6].copy_from_slice(&self.sec.to_be_bytes());
        b[6..10].copy_from_slice(&self.nsec.to_be_bytes());
        b
    }

    /// Appends [`encode`](Self::encode) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }

    /// Reads a time at the start of `buf`: an integer, an EventTime ext (fixext8 or ext8/16/32
    /// holding 8 bytes), or a v1.5 metadata array `[time, {...}]` (element 0 is taken).
    ///
    /// Returns the time and the byte length of the whole value.
    pub fn decode(buf: &[u8]) -> Result<(EventTime, usize), TimeError> {
        let (head, n) = read_head(buf)?;
        match head {
            Head::Int(v) => Ok((EventTime::from_int(v), n)),
            Head::Ext(EVENT_TIME_EXT, p) => Ok((Self::from_ext_payload(p)?, n)),
            Head::Array(len) if len >= 1 => {
                let total = value_len(buf)?;
                let inner = buf.get(n..total).unwrap_or_default();
                let (h0, _) = read_head(inner)?;
                let t = match h0 {
                    Head::Int(v) => EventTime::from_int(v),
                    Head::Ext(EVENT_TIME_EXT, p) => Self::from_ext_payload(p)?,
                    other => return Err(TimeError::WrongType(type_name(&other))),
                };
                Ok((t, total))
            }
            other => Err(TimeError::WrongType(type_name(&other))),
        }
    }

    fn from_ext_payload(p: &[u8]) -> Result<EventTime, TimeError> {
        let Ok(b) = <[u8; 8]>::try_from(p) else {
            return Err(TimeError::WrongType(
                "ext 0 with a payload other than 8 bytes",
            ));
        };
        Ok(EventTime {
            sec: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            nsec: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

impl std::fmt::Display for EventTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:09}", self.sec, self.nsec)
    }
}

/// A short name of a msgpack type, for messages.
pub(crate) fn type_name(h: &Head<'_>) -> &'static str {
    match h {
        Head::Nil => "nil",
        Head::Bool(_) => "bool",
        Head::Int(_) => "int",
        Head::F32(_) | Head::F64(_) => "float",
        Head::Str(_) => "str",
        Head::Bin(_) => "bin",
        Head::Array(_) => "array",
        Head::Map(_) => "map",
        Head::Ext(_, _) => "ext",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expect: Result<(EventTime, usize), TimeError>) {
        assert_eq!(EventTime::decode(input), expect, "input {input:02x?}");
    }

    #[test]
    fn decode_table() {
        let t = EventTime::new(0x5f5e_1000, 123_456_789);
        let ext = t.encode();
        check(&ext, Ok((t, 10)));
        let mut ext8 = vec![0xc7, 8, 0];
        ext8.extend_from_slice(&ext[2..]);
        check(&ext8, Ok((t, 11)));
        check(
            &[0xce, 0x55, 0xee, 0x3c, 0xf8],
            Ok((EventTime::new(1_441_676_536, 0), 5)),
        );
        check(&[0x05], Ok((EventTime::new(5, 0), 1)));
        check(&[0x00], Ok((EventTime::new(0, 0), 1)));
        // Fluentd's pack('N') truncation of out-of-range integers.
        check(&[0xff], Ok((EventTime::new(u32::MAX, 0), 1)));
        check(
            &[0xcf, 0, 0, 0, 1, 0, 0, 0, 7],
            Ok((EventTime::new(7, 0), 9)),
        );
        // v1.5 metadata: [EventTime, {"k": 1}] and [int].
        let mut meta = vec![0x92];
        meta.extend_from_slice(&ext);
        meta.extend_from_slice(&[0x81, 0xa1, b'k', 0x01]);
        check(&meta, Ok((t, meta.len())));
        check(&[0x91, 0x07], Ok((EventTime::new(7, 0), 2)));
        check(
            &[0xcb, 0, 0, 0, 0, 0, 0, 0, 0],
            Err(TimeError::WrongType("float")),
        );
        check(&[0xa1, b'x'], Err(TimeError::WrongType("str")));
        check(&[0x90], Err(TimeError::WrongType("array")));
        check(&[0x91, 0xc0], Err(TimeError::WrongType("nil")));
        check(
            &[0xd6, 0, 1, 2, 3, 4],
            Err(TimeError::WrongType(
                "ext 0 with a payload other than 8 bytes",
            )),
        );
        check(
            &[0xd7, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            Err(TimeError::WrongType("ext")),
        );
        assert!(
            matches!(EventTime::decode(&[0xd7, 0, 1]), Err(TimeError::Msgpack(e)) if e.is_incomplete())
        );
    }

    #[test]
    fn encode_is_fixext8_big_endian() {
        assert_eq!(
            EventTime::new(1, 2).encode(),
            [0xd7, 0, 0, 0, 0, 1, 0, 0, 0, 2]
        );
        assert_eq!(EventTime::new(1, 2).to_string(), "1.000000002");
        assert!(EventTime::now().sec > 1_600_000_000);
    }
}
