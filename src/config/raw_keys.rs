//! Key diagnostics for `sidecar.toml`: which key is unknown or ill-typed.
//!
//! serde reports an unknown field or a type mismatch without the path to it,
//! so this module finds the path itself: it reads the field names from the
//! raw structs' own `Deserialize` impls (no second list to keep in step) and,
//! for type errors, retries each key alone to see which one fails. It does
//! not validate values; that is `validate`.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::raw::{
    try_single_key, RawAdmin, RawCache, RawConfig, RawLog, RawNamespace, RawPolicy, RawServer,
    RawUpstream,
};
use super::ConfigError;

/// The field names a derived `Deserialize` impl for a struct accepts.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    // The probe always fails after recording the names; the error is expected.
    let _ = T::deserialize(FieldProbe { found: &mut found });
    found
}

struct FieldProbe<'a> {
    found: &'a mut &'static [&'static str],
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("field probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.found = fields;
        Err(de::Error::custom("field probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

const NAMESPACE: &str = "namespace";

/// The known keys of a top-level section, or `None` for an unknown section.
fn section_fields(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "server" => fields_of::<RawServer>(),
        "admin" => fields_of::<RawAdmin>(),
        "upstream" => fields_of::<RawUpstream>(),
        "cache" => fields_of::<RawCache>(),
        NAMESPACE => fields_of::<RawNamespace>(),
        "policy" => fields_of::<RawPolicy>(),
        "log" => fields_of::<RawLog>(),
        "migration" => fields_of::<super::migration::RawMigration>(),
        _ => return None,
    })
}

/// Deserializes one key of a section on its own.
fn check_section_key(section: &str, key: &str, value: &toml::Value) -> Result<(), toml::de::Error> {
    match section {
        "server" => try_single_key::<RawServer>(key, value),
        "admin" => try_single_key::<RawAdmin>(key, value),
        "upstream" => try_single_key::<RawUpstream>(key, value),
        "cache" => try_single_key::<RawCache>(key, value),
        NAMESPACE => try_single_key::<RawNamespace>(key, value),
        "policy" => try_single_key::<RawPolicy>(key, value),
        "log" => try_single_key::<RawLog>(key, value),
        "migration" => try_single_key::<super::migration::RawMigration>(key, value),
        _ => Ok(()),
    }
}

/// The tables of a section: one for `[server]`, one per `[[namespace]]`,
/// each with the context to show for it.
fn section_tables<'a>(section: &str, value: &'a toml::Value) -> Vec<(String, &'a toml::Table)> {
    match (section, value) {
        (NAMESPACE, toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let context = format!(" (in [[namespace]] #{})", i + 1);
                item.as_table().map(|table| (context, table))
            })
            .collect(),
        (_, toml::Value::Table(table)) => vec![(String::new(), table)],
        _ => Vec::new(),
    }
}

/// Fails on the first key, at any depth, that the raw structs do not have.
pub(crate) fn check_known_keys(origin: &str, file: &toml::Table) -> Result<(), ConfigError> {
    let unknown = |key: String, context: String| ConfigError::UnknownKey {
        origin: origin.to_owned(),
        key,
        context,
    };
    let top = fields_of::<RawConfig>();
    for (section, value) in file {
        if !top.contains(&section.as_str()) {
            return Err(unknown(section.clone(), String::new()));
        }
        let Some(known) = section_fields(section) else {
            continue;
        };
        for (context, table) in section_tables(section, value) {
            if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
                return Err(unknown(format!("{section}.{key}"), context));
            }
        }
    }
    Ok(())
}

/// Turns a whole-file serde error into one naming the offending key.
pub(crate) fn locate_error(
    origin: &str,
    file: &toml::Table,
    whole: &toml::de::Error,
) -> ConfigError {
    let invalid = |key: String, message: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        message,
    };
    for (section, value) in file {
        let Err(section_err) = try_single_key::<RawConfig>(section, value) else {
            continue;
        };
        for (context, table) in section_tables(section, value) {
            for (key, item) in table {
                if let Err(err) = check_section_key(section, key, item) {
                    return invalid(
                        format!("{section}.{key}"),
                        format!("{}{context}", err.message()),
                    );
                }
            }
        }
        let message = match (section.as_str(), value) {
            (NAMESPACE, toml::Value::Table(_)) => {
                "write each namespace as a [[namespace]] table (double brackets)".to_owned()
            }
            _ => section_err.message().to_owned(),
        };
        return invalid(section.clone(), message);
    }
    invalid("(file)".to_owned(), whole.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_come_from_the_structs() {
        assert!(fields_of::<RawServer>().contains(&"max_bulk_len"));
        assert!(fields_of::<RawConfig>().contains(&"namespace"));
        assert!(!fields_of::<RawConfig>().contains(&"namespaces"));
        assert!(fields_of::<RawNamespace>().contains(&"touch_on_read"));
    }
}
