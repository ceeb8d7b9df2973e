//! Dotted `key=value` overrides of a TOML config (`selfemo train --set seed=1`), applied to the
//! parsed table before it is read as a [`RunConfig`](crate::config::RunConfig), so a seed or a
//! dataset sweep needs no copy of the file. The value is TOML (`1`, `5e-4`, `true`, `"x"`,
//! `[1, 2]`); a bare word that is not TOML (`emorynlp`) is taken as a string.

use toml::{Table, Value};

/// One override, `a.b.c=value`, split into its key path and its value.
fn parse(spec: &str) -> Result<(Vec<&str>, Value), String> {
    let (key, raw) = spec.split_once('=').ok_or_else(|| format!("--set {spec}: expected KEY=VALUE, e.g. seed=1 or data.dataset=emorynlp"))?;
    let path: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if path.iter().any(|part| part.is_empty()) {
        return Err(format!("--set {spec}: the key `{}` has an empty part", key.trim()));
    }
    let raw = raw.trim();
    let value = match toml::from_str::<Table>(&format!("v = {raw}")) {
        Ok(mut table) => table.remove("v").expect("the one key just parsed"),
        Err(_) => Value::String(raw.to_string()),
    };
    Ok((path, value))
}

/// Sets each override in `table`, in order (a later one wins), creating the tables on its path
/// that the file leaves out; errors name the override.
pub fn apply(table: &mut Table, overrides: &[String]) -> Result<(), String> {
    for spec in overrides {
        let (path, value) = parse(spec)?;
        let (last, parents) = path.split_last().expect("split yields at least one part");
        let mut here = &mut *table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = here.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
            here = entry.as_table_mut().ok_or_else(|| format!("--set {spec}: `{}` is a value, not a table", path[..=depth].join(".")))?;
        }
        here.insert(last.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(text: &str, overrides: &[&str]) -> Result<Table, String> {
        let mut table: Table = toml::from_str(text).unwrap();
        apply(&mut table, &overrides.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        Ok(table)
    }

    #[test]
    fn values_are_toml_and_bare_words_are_strings() {
        let t =
            applied("seed = 0\n[data]\ndataset = \"meld\"", &["seed=1", "data.dataset=emorynlp", "grpo.beta = 4e-2", "eval.test_modes=[\"score\"]"]).unwrap();
        assert_eq!(t["seed"], Value::Integer(1));
        assert_eq!(t["data"]["dataset"], Value::String("emorynlp".into()));
        assert_eq!(t["grpo"]["beta"], Value::Float(0.04));
        assert_eq!(t["eval"]["test_modes"], Value::Array(vec![Value::String("score".into())]));
    }

    #[test]
    fn missing_tables_are_created_and_a_later_override_wins() {
        let t = applied("name = \"x\"", &["rewards.weights.consistency=0.5", "rewards.weights.consistency=0.0"]).unwrap();
        assert_eq!(t["rewards"]["weights"]["consistency"], Value::Float(0.0));
        assert_eq!(t["name"], Value::String("x".into()));
    }

    #[test]
    fn bad_overrides_are_named() {
        assert!(applied("seed = 0", &["seed"]).unwrap_err().contains("--set seed: expected KEY=VALUE"));
        assert!(applied("seed = 0", &["grpo..beta=1"]).unwrap_err().contains("empty part"));
        assert!(applied("seed = 0", &["seed.x=1"]).unwrap_err().contains("`seed` is a value, not a table"));
    }
}
