//! Row text templates: `"{region}: {amount} on {date}"`, with `{{` and `}}` for literal braces.
//!
//! Parsed when preferences are saved, so a malformed template is refused then and not when
//! rows are rendered. Pure: no I/O.

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// A column name to fill in.
    Column(String),
}

/// Parse `template` into pieces, or say plainly what is wrong and where.
pub fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        '}' => {
                            closed = true;
                            break;
                        }
                        '{' => {
                            return Err(format!(
                                "the '{{' at character {} opens a placeholder inside another",
                                at + 1
                            ));
                        }
                        c => name.push(c),
                    }
                }
                if !closed {
                    return Err(format!(
                        "the '{{' at character {} is never closed; write {{{{ for a literal brace",
                        at + 1
                    ));
                }
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!(
                        "the placeholder at character {} names no column",
                        at + 1
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Column(name.to_string()));
            }
            '}' => {
                return Err(format!(
                    "the '}}' at character {} closes nothing; write }}}} for a literal brace",
                    at + 1
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The column names a template uses, in order of first use.
pub fn columns(pieces: &[Piece]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in pieces {
        if let Piece::Column(name) = piece
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_escapes() {
        let pieces = parse("{region}: {{total}} {amount}").unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Column("region".into()),
                Piece::Text(": {total} ".into()),
                Piece::Column("amount".into()),
            ]
        );
        assert_eq!(columns(&pieces), vec!["region", "amount"]);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(columns(&parse("{a}{ a }{b}").unwrap()), vec!["a", "b"]);
    }

    #[test]
    fn malformed_templates_say_where() {
        for (template, needle) in [
            ("{region", "never closed"),
            ("a } b", "closes nothing"),
            ("{}", "names no column"),
            ("{a{b}}", "inside another"),
        ] {
            let error = parse(template).unwrap_err();
            assert!(error.contains(needle), "{template}: {error}");
            assert!(error.contains("character"), "{template}: {error}");
        }
    }
}
