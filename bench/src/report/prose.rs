//! The report's prose lives in `prose.md`, not in code: each `## name`
//! section is one text whose `{placeholder}`s take the run's figures.

const PROSE: &str = include_str!("prose.md");

/// Section `name` of prose.md, its lines joined (see the file's head), with
/// every `{key}` replaced by its value in `values`.
///
/// Panics when the section does not exist, a placeholder has no value or a
/// value has no placeholder: prose.md and the code filling it must agree,
/// and every benchmark run (`--smoke` included) would show it at once.
pub(super) fn fill(name: &str, values: &[(&str, String)]) -> String {
    let text = section(name);
    let mut out = String::with_capacity(text.len());
    let mut used = vec![false; values.len()];
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .unwrap_or_else(|| panic!("prose.md `{name}`: an unclosed {{"));
        let key = &after[..close];
        let i = values
            .iter()
            .position(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("prose.md `{name}`: no value for {{{key}}}"));
        out.push_str(&values[i].1);
        used[i] = true;
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        panic!("prose.md `{name}` has no {{{}}}", values[i].0);
    }
    out
}

/// The lines of section `name`, joined with spaces; a line starting with
/// "- " starts a new line.
fn section(name: &str) -> String {
    let heading = format!("\n## {name}\n");
    let start = PROSE
        .find(&heading)
        .unwrap_or_else(|| panic!("prose.md has no section `{name}`"))
        + heading.len();
    let body = &PROSE[start..];
    let body = body.find("\n## ").map_or(body, |end| &body[..end]);
    let mut out = String::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push(if line.starts_with("- ") { '\n' } else { ' ' });
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_unwrapped_and_filled() {
        let values = [
            ("errors", "3".to_owned()),
            ("case", "director, NAT".to_owned()),
            ("conn", "keep-alive".to_owned()),
        ];
        assert_eq!(
            fill("wrk_errors", &values),
            "wrk counted errors (3 in director, NAT, keep-alive): see latest.json for every case."
        );
        let method = fill("method", &[]);
        assert_eq!(method.lines().count(), 4, "{method}");
        assert!(
            method
                .lines()
                .all(|l| l.starts_with("- ") && !l.contains("  ")),
            "{method}"
        );
    }

    #[test]
    #[should_panic(expected = "prose.md `wrk_errors`: no value for {conn}")]
    fn a_placeholder_without_a_value_panics() {
        fill(
            "wrk_errors",
            &[("errors", "3".to_owned()), ("case", "x".to_owned())],
        );
    }

    #[test]
    #[should_panic(expected = "prose.md `smoke` has no {cores}")]
    fn a_value_without_a_placeholder_panics() {
        fill("smoke", &[("cores", "2".to_owned())]);
    }

    #[test]
    #[should_panic(expected = "prose.md has no section `nope`")]
    fn an_unknown_section_panics() {
        fill("nope", &[]);
    }
}
