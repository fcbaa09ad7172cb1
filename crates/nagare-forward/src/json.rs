//! JSON framing and conversion for in_forward's JSON mode (first byte `{` or `[`).

use nagare_core::msgpack::{write_array_header, write_map_header, write_str};

/// An incremental scanner that finds where one top-level JSON object or array ends.
///
/// It tracks strings, escapes and bracket depth only; the complete text is then parsed by
/// `serde_json`. Like the msgpack skipper it never looks back, so scanned bytes of an
/// oversized value can be dropped with [`JsonFramer::rebase`].
#[derive(Debug, Clone)]
pub struct JsonFramer {
    pos: usize,
    depth: usize,
    max_depth: usize,
    /// One bit per open bracket (1 = `{`), innermost in bit 0.
    kinds: u128,
    in_str: bool,
    esc: bool,
}

impl JsonFramer {
    /// A framer rejecting nesting deeper than `max_depth`.
    pub fn new(max_depth: usize) -> Self {
        JsonFramer {
            pos: 0,
            depth: 0,
            max_depth: max_depth.min(128),
            kinds: 0,
            in_str: false,
            esc: false,
        }
    }

    /// Starts over for the next value.
    pub fn reset(&mut self) {
        *self = JsonFramer::new(self.max_depth);
    }

    /// Offset scanned so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The caller dropped the first `n` scanned bytes.
    pub fn rebase(&mut self, n: usize) {
        self.pos -= n.min(self.pos);
    }

    /// Scans `buf` (the value starts at 0); returns the end offset once the value is complete.
    pub fn advance(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        while let Some(&b) = buf.get(self.pos) {
            self.pos += 1;
            if self.in_str {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    self.in_str = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'"' if self.depth > 0 => self.in_str = true,
                b'{' | b'[' => {
                    if self.depth >= self.max_depth {
                        return Err(format!("JSON nesting deeper than {}", self.max_depth));
                    }
                    self.depth += 1;
                    self.kinds = (self.kinds << 1) | u128::from(b == b'{');
                }
                b'}' | b']' if self.depth > 0 => {
                    if (self.kinds & 1 == 1) != (b == b'}') {
                        return Err(format!(
                            "mismatched '{}' at byte {}",
                            char::from(b),
                            self.pos - 1
                        ));
                    }
                    self.kinds >>= 1;
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.pos));
                    }
                }
                _ if self.depth > 0 => {}
                _ => {
                    return Err(format!(
                        "a JSON request must be an object or an array, found byte 0x{b:02x}"
                    ));
                }
            }
        }
        Ok(None)
    }
}

/// Appends the msgpack encoding of a JSON value (integers stay integers).
pub fn json_to_msgpack(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                nagare_core::msgpack::write_int(out, i);
            } else if let Some(u) = n.as_u64() {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_be_bytes());
            }
        }
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(a) => {
            write_array_header(out, a.len() as u32);
            a.iter().for_each(|e| json_to_msgpack(e, out));
        }
        Value::Object(m) => {
            write_map_header(out, m.len() as u32);
            for (k, v) in m {
                write_str(out, k.as_bytes());
                json_to_msgpack(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<Option<usize>, &str>) {
        let mut f = JsonFramer::new(4);
        let got = f.advance(input.as_bytes());
        match (got, expect) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{input}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "{input}: {g}"),
            (g, e) => panic!("{input}: got {g:?}, want {e:?}"),
        }
    }

    #[test]
    fn framing_table() {
        check(r#"["a",1,{}]"#, Ok(Some(10)));
        check(r#"  {"k":"]}"} tail"#, Ok(Some(12)));
        check(r#"["a\"]",1]"#, Ok(Some(10)));
        check(r#"["a",1"#, Ok(None));
        check("   ", Ok(None));
        check("1", Err("object or an array"));
        check("[1}", Err("mismatched '}'"));
        check(r#"{"a":[1]]"#, Err("mismatched ']'"));
        check("[[[[[1]]]]]", Err("deeper than 4"));
    }

    #[test]
    fn conversion_keeps_integers() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a":[1,-2,1.5,null,true,"x"],"b":18446744073709551615}"#)
                .unwrap_or_default();
        let mut out = Vec::new();
        json_to_msgpack(&v, &mut out);
        let mut r = &out[..];
        let back = rmpv::decode::read_value(&mut r).unwrap_or(rmpv::Value::Nil);
        assert_eq!(
            back.to_string(),
            r#"{"a": [1, -2, 1.5, nil, true, "x"], "b": 18446744073709551615}"#
        );
    }
}
