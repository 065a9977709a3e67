//! Where a YAML path (`plans[1].repositories[0].pattern`) is written in the configuration
//! text, as `line:column`, so that a problem found after parsing (an unknown key, a wrong type,
//! a validation error) points into the file an operator edits.
//!
//! `serde_yaml_ng::Value` keeps no positions, so this reads the block-style text by indentation;
//! for a part written in flow style (`{a: 1}`, `[x, y]`) it answers the nearest enclosing key.

/// One line with content: its 1-based number, indentation and text (after the indentation).
#[derive(Clone, Copy)]
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// One step of a YAML path.
#[derive(Debug, PartialEq)]
pub(crate) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `Key(a) Key(b) Index(2) Key(c)`; `None` for a malformed path.
pub(crate) fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let (index, after) = inner.split_once(']')?;
            out.push(Step::Index(index.parse().ok()?));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// The key a `key: value` line starts with (quotes removed).
fn key_of(text: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote) {
            let (key, after) = inner.split_once(quote)?;
            return after.trim_start().starts_with(':').then_some(key);
        }
    }
    let colon = text
        .find(": ")
        .or_else(|| text.ends_with(':').then(|| text.len() - 1))?;
    Some(text[..colon].trim_end())
}

fn is_item(line: &Line) -> bool {
    line.text == "-" || line.text.starts_with("- ")
}

/// `(line, column)` (1-based) of `path` in `text`, or of its deepest part that can be found;
/// `None` when not even the first key is there.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let mut block: Vec<Line> = text
        .lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let text = raw.trim_start();
            let skip = text.is_empty() || text.starts_with('#') || text == "---";
            (!skip).then(|| Line {
                no: i + 1,
                indent: raw.len() - text.len(),
                text,
            })
        })
        .collect();
    let mut found = None;
    for step in steps(path)? {
        let Some(indent) = block.first().map(|l| l.indent) else {
            break;
        };
        let (at, child) = match step {
            Step::Key(name) => {
                let Some(at) = block
                    .iter()
                    .position(|l| l.indent == indent && key_of(l.text) == Some(name))
                else {
                    break;
                };
                let mut child: Vec<Line> = block[at + 1..]
                    .iter()
                    .take_while(|l| l.indent > indent)
                    .copied()
                    .collect();
                if child.is_empty() {
                    // A list may sit at its key's own indentation: `plans:\n- name: a`.
                    child = block[at + 1..]
                        .iter()
                        .take_while(|l| l.indent == indent && is_item(l))
                        .copied()
                        .collect();
                }
                (at, child)
            }
            Step::Index(n) => {
                let Some(at) = block
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.indent == indent && is_item(l))
                    .nth(n)
                    .map(|(i, _)| i)
                else {
                    break;
                };
                // The item's content: what follows `- ` on its line, then its deeper lines.
                let first = block[at];
                let rest = first.text[1..].trim_start();
                let mut child = Vec::new();
                if !rest.is_empty() {
                    child.push(Line {
                        no: first.no,
                        indent: first.indent + first.text.len() - rest.len(),
                        text: rest,
                    });
                }
                child.extend(block[at + 1..].iter().take_while(|l| l.indent > indent));
                (at, child)
            }
        };
        found = Some((block[at].no, block[at].indent + 1));
        block = child;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const FILE: &str = "\
# registry-token
server:
  listen: \"0.0.0.0:8085\"
authority:
  issuer: https://a.example
  requried_audience: x   # a typo
  dpop:
    proofLifetime: 60s
plans:
  - name: public
    repositories:
      - pattern: \"public/*\"
      - pattern: \"a*b\"
        actions: [pull, fly]
  -
    name: more
defaultPlan: public
flow: {a: 1}
list:
- x
- y
";

    /// Keys, list items and their first keys, lists at their key's indentation; a path that
    /// goes into flow style or past what is written answers the deepest part found.
    #[rstest]
    #[case("server.listen", Some((3, 3)))]
    #[case("authority.requried_audience", Some((6, 3)))]
    #[case("authority.dpop.proofLifetime", Some((8, 5)))]
    #[case("plans[0].name", Some((10, 5)))]
    #[case("plans[0]", Some((10, 3)))]
    #[case("plans[0].repositories[1].pattern", Some((13, 9)))]
    #[case("plans[0].repositories[1].actions[1]", Some((14, 9)))]
    #[case("plans[1].name", Some((16, 5)))]
    #[case("defaultPlan", Some((17, 1)))]
    #[case("flow.a", Some((18, 1)))]
    #[case("list[1]", Some((21, 1)))]
    #[case("authority.audiences", Some((4, 1)))]
    #[case("nowhere.at.all", None)]
    fn paths_are_located(#[case] path: &str, #[case] at: Option<(usize, usize)>) {
        assert_eq!(locate(FILE, path), at, "{path}");
    }

    #[rstest]
    #[case("a.b[2].c", Some(vec![Step::Key("a"), Step::Key("b"), Step::Index(2), Step::Key("c")]))]
    #[case("plans[1][0]", Some(vec![Step::Key("plans"), Step::Index(1), Step::Index(0)]))]
    #[case("a[x]", None)]
    fn paths_parse(#[case] path: &str, #[case] want: Option<Vec<Step>>) {
        assert_eq!(steps(path), want);
    }
}
