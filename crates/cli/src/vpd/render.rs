//! Indented text from the same serialized values `--json` prints, so the
//! two outputs never disagree: `snake_case` keys become words, objects nest,
//! lists of objects become `-` items headed by their type/code and name.

use serde_json::Value;

/// Render `v` (normally an object) at `indent` spaces.
pub fn render(v: &Value, indent: usize) -> String {
    let mut out = String::new();
    write_value(&mut out, v, indent);
    out
}

fn label(k: &str) -> String {
    k.replace('_', " ")
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("—".into()),
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.into()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(if s.is_empty() { "\"\"".into() } else { s.clone() }),
        _ => None,
    }
}

/// Keys that head an item instead of being listed as fields.
const HEAD_KEYS: [&str; 6] = ["type", "code", "opcode", "rod_type", "designator_type", "name"];

fn head(obj: &serde_json::Map<String, Value>) -> (String, Vec<&str>) {
    let mut parts = Vec::new();
    let mut used = Vec::new();
    for k in HEAD_KEYS {
        if let Some(Value::String(s)) = obj.get(k) {
            parts.push(s.clone());
            used.push(k);
        }
    }
    (parts.join(" "), used)
}

fn write_value(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                // `truncated: no` is noise in text output.
                if k == "truncated" && v == &Value::Bool(false) {
                    continue;
                }
                write_field(out, &pad, indent, &label(k), v);
            }
        }
        other => {
            if let Some(s) = scalar(other) {
                out.push_str(&format!("{pad}{s}\n"));
            } else if let Value::Array(a) = other {
                write_items(out, a, indent);
            }
        }
    }
}

fn write_field(out: &mut String, pad: &str, indent: usize, name: &str, v: &Value) {
    if let Some(s) = scalar(v) {
        out.push_str(&format!("{pad}{name}: {s}\n"));
        return;
    }
    match v {
        Value::Array(a) if a.is_empty() => out.push_str(&format!("{pad}{name}: none\n")),
        Value::Array(a) if a.iter().all(|x| scalar(x).is_some()) => {
            let items: Vec<String> = a.iter().filter_map(scalar).collect();
            out.push_str(&format!("{pad}{name}: {}\n", items.join(", ")));
        }
        Value::Array(a) => {
            out.push_str(&format!("{pad}{name}:\n"));
            write_items(out, a, indent + 2);
        }
        _ => {
            out.push_str(&format!("{pad}{name}:\n"));
            write_value(out, v, indent + 2);
        }
    }
}

fn write_items(out: &mut String, a: &[Value], indent: usize) {
    let pad = " ".repeat(indent);
    for item in a {
        match item {
            Value::Object(m) => {
                let (h, used) = head(m);
                let rest: Vec<(&String, &Value)> =
                    m.iter().filter(|(k, v)| !used.contains(&k.as_str()) && !is_quiet(k, v)).collect();
                // Small items with only scalar fields fit on one line.
                let all_scalar = rest.iter().all(|(_, v)| scalar(v).is_some());
                if all_scalar && rest.len() <= 4 {
                    let fields: Vec<String> =
                        rest.iter().map(|(k, v)| format!("{}: {}", label(k), scalar(v).unwrap_or_default())).collect();
                    let sep = if h.is_empty() || fields.is_empty() { "" } else { " — " };
                    out.push_str(&format!("{pad}- {h}{sep}{}\n", fields.join(", ")));
                } else {
                    out.push_str(&format!("{pad}- {h}\n"));
                    let inner = " ".repeat(indent + 4);
                    for (k, v) in rest {
                        write_field(out, &inner, indent + 4, &label(k), v);
                    }
                }
            }
            other => {
                out.push_str(&format!("{pad}- "));
                let mut s = String::new();
                write_value(&mut s, other, 0);
                out.push_str(s.trim_start());
            }
        }
    }
}

fn is_quiet(k: &str, v: &Value) -> bool {
    k == "truncated" && v == &Value::Bool(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_nested_values() {
        let v = json!({
            "maximum_transfer_length": 32768,
            "write_same_non_zero": true,
            "optimal": null,
            "truncated": false,
            "pages": [{"code": "00h", "name": "Supported VPD Pages"}],
            "list": [1, 2],
            "descriptors": [{"type": "0000h", "name": "Block Device ROD Token Limits", "length": 32,
                             "maximum_range_descriptors": 64, "a": 1, "b": 2, "c": 3}],
        });
        let s = render(&v, 2);
        assert!(s.contains("  maximum transfer length: 32768\n"), "{s}");
        assert!(s.contains("  write same non zero: yes\n"));
        assert!(s.contains("  optimal: —\n"));
        assert!(!s.contains("truncated"));
        assert!(s.contains("  pages:\n    - 00h Supported VPD Pages\n"), "{s}");
        assert!(s.contains("  list: 1, 2\n"));
        assert!(s.contains("    - 0000h Block Device ROD Token Limits\n        length: 32\n"), "{s}");
    }
}
