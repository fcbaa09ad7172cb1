//! A small reader for Fluentd-syntax config snippets, for tests and examples:
//! `<name arg>` … `</name>` sections, `key value` params (value trimmed, `key` alone = `""`),
//! `#` comment lines, and `"…"` values with `\"`, `\\`, `\n`, `\t` escapes. No `@include`,
//! no embedded Ruby, no multi-line values: the host's `nagare-config` is the real parser.

use nagare_plugin_api::ConfigNode;

use super::NodeBuilder;

/// Reads `text` as the body of an element `<name arg>` in file `file`.
/// Errors name the line: `"test.conf:3: unmatched </buffer>"`.
pub fn parse_element(file: &str, name: &str, arg: &str, text: &str) -> Result<ConfigNode, String> {
    let mut stack: Vec<NodeBuilder> =
        vec![NodeBuilder::new(name, arg).location(format!("{file}:1"))];
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("</") {
            let end = rest
                .strip_suffix('>')
                .ok_or(format!("{file}:{lineno}: missing '>'"))?
                .trim();
            if stack.len() < 2 {
                return Err(format!("{file}:{lineno}: unmatched </{end}>"));
            }
            let done = stack.pop().map(NodeBuilder::build).unwrap_or_default();
            if done.name.as_str() != end {
                return Err(format!(
                    "{file}:{lineno}: unmatched end tag </{end}>, expected </{}>",
                    done.name
                ));
            }
            if let Some(parent) = stack.last_mut() {
                parent.push_child(done);
            }
        } else if let Some(rest) = line.strip_prefix('<') {
            let inner = rest
                .strip_suffix('>')
                .ok_or(format!("{file}:{lineno}: missing '>'"))?
                .trim();
            let (n, a) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
            stack.push(NodeBuilder::new(n, a.trim()).location(format!("{file}:{lineno}")));
        } else {
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let v = unquote(v.trim()).map_err(|e| format!("{file}:{lineno}: {e}"))?;
            if let Some(top) = stack.last_mut() {
                top.push_attr(k, Some(v));
            }
        }
    }
    if stack.len() != 1 {
        let open = stack
            .last()
            .map(|b| b.name().to_owned())
            .unwrap_or_default();
        return Err(format!(
            "{file}: expected end tag '</{open}>' but got end of file"
        ));
    }
    Ok(stack.pop().map(NodeBuilder::build).unwrap_or_default())
}

fn unquote(v: &str) -> Result<String, String> {
    let Some(body) = v.strip_prefix('"') else {
        return Ok(v.to_owned());
    };
    let body = body
        .strip_suffix('"')
        .ok_or("unterminated double-quoted string")?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => return Err("dangling backslash".to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_sections() {
        let text = "@type file\npath /var/log/x  \n# comment\nflag\n<buffer tag, time>\n  timekey 1h\n</buffer>\nmsg \"a\\tb\"\n";
        let node = parse_element("t.conf", "match", "app.**", text);
        let expect = NodeBuilder::new("match", "app.**")
            .location("t.conf:1")
            .attr("@type", "file")
            .attr("path", "/var/log/x")
            .attr("flag", "")
            .child(
                NodeBuilder::new("buffer", "tag, time")
                    .location("t.conf:5")
                    .attr("timekey", "1h"),
            )
            .attr("msg", "a\tb")
            .build();
        assert_eq!(node, Ok(expect));
    }

    #[test]
    fn errors_name_the_line() {
        for (text, expect) in [
            ("</buffer>", "t.conf:1: unmatched </buffer>"),
            (
                "<a>\n</b>",
                "t.conf:2: unmatched end tag </b>, expected </a>",
            ),
            (
                "<a>\nk v",
                "t.conf: expected end tag '</a>' but got end of file",
            ),
            ("k \"x", "t.conf:1: unterminated double-quoted string"),
        ] {
            assert_eq!(
                parse_element("t.conf", "m", "", text),
                Err(expect.to_owned()),
                "{text:?}"
            );
        }
    }
}
