//! Column names for a Parquet schema: one per leaf column, as a dotted path a person can read.
//!
//! Struct fields are joined with dots (`address.city`). The wrapper levels the LIST and MAP
//! encodings add are dropped, so a list is named after its field (`tags`, not
//! `tags.list.element`), a list of structs gives one column per struct field (`items.sku`,
//! `items.qty`), and a map gives its key and value (`attributes.key`, `attributes.value`).
//! Lists are recognised as the Parquet spec's backward-compatibility rules describe, so the
//! two-level lists of older writers (`array`, `<name>_tuple`, repeated primitives) get the same
//! names as three-level ones. A repeated field without a LIST annotation keeps its own name.

use ::parquet::basic::{ConvertedType, LogicalType};
use ::parquet::schema::types::{SchemaDescriptor, Type};

/// The names of the leaf columns, in the schema's leaf order, and the groups without any leaf
/// (they hold no values, so they become no column).
pub fn leaf_names(schema: &SchemaDescriptor) -> (Vec<String>, Vec<String>) {
    let mut names = Names::default();
    for field in schema.root_schema().get_fields() {
        names.field(field, "");
    }
    // Every leaf is reached exactly once by the walk above; should a schema ever defeat it,
    // the full physical paths are still unique and readable.
    if names.leaves.len() != schema.num_columns() {
        let paths = schema.columns().iter().map(|c| c.path().string()).collect();
        return (paths, names.empty_groups);
    }
    (names.leaves, names.empty_groups)
}

#[derive(Default)]
struct Names {
    leaves: Vec<String>,
    empty_groups: Vec<String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn is_list(field: &Type) -> bool {
    let info = field.get_basic_info();
    info.converted_type() == ConvertedType::LIST
        || matches!(info.logical_type_ref(), Some(LogicalType::List))
}

fn is_map(field: &Type) -> bool {
    let info = field.get_basic_info();
    matches!(
        info.converted_type(),
        ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE
    ) || matches!(info.logical_type_ref(), Some(LogicalType::Map))
}

impl Names {
    /// A field named `field.name()` under `prefix`.
    fn field(&mut self, field: &Type, prefix: &str) {
        self.value(field, &join(prefix, field.name()));
    }

    /// The values of `field`, named `name` (the field's own name already accounted for).
    fn value(&mut self, field: &Type, name: &str) {
        if field.is_primitive() {
            self.leaves.push(name.to_string());
            return;
        }
        let children = field.get_fields();
        if children.is_empty() {
            self.empty_groups.push(name.to_string());
        } else if is_list(field) && children.len() == 1 {
            self.list(field, &children[0], name);
        } else if is_map(field) && children.len() == 1 && children[0].is_group() {
            // key_value { key; value }: the repeated level is dropped, key and value kept.
            for child in children[0].get_fields() {
                self.field(child, name);
            }
        } else {
            for child in children {
                self.field(child, name);
            }
        }
    }

    /// A LIST-annotated `list` whose single child is the `repeated` level.
    fn list(&mut self, list: &Type, repeated: &Type, name: &str) {
        if repeated.is_primitive() {
            // Two-level list of primitives: the repeated field is the element.
            self.leaves.push(name.to_string());
            return;
        }
        let inner = repeated.get_fields();
        let legacy_name =
            repeated.name() == "array" || repeated.name() == format!("{}_tuple", list.name());
        if inner.len() == 1 && !legacy_name {
            // Three-level list: list → repeated group → element.
            self.value(&inner[0], name);
        } else {
            // Two-level list: the repeated group is the element (a struct, or itself a list).
            self.value(repeated, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    fn names(message: &str) -> Vec<String> {
        let schema = parse_message_type(message).expect("schema");
        leaf_names(&SchemaDescriptor::new(Arc::new(schema))).0
    }

    #[test]
    #[rustfmt::skip]
    fn nested_fields_become_dotted_paths() {
        let cases: &[(&str, &[&str])] = &[
            ("message m { required int32 id; optional binary name (UTF8); }", &["id", "name"]),
            ("message m { optional group address { optional binary city; optional group geo { required double lat; } } }",
                &["address.city", "address.geo.lat"]),
            ("message m { optional group tags (LIST) { repeated group list { optional binary element; } } }",
                &["tags"]),
            ("message m { optional group items (LIST) { repeated group list { optional group element { \
                optional binary sku; optional int32 qty; } } } }", &["items.sku", "items.qty"]),
            ("message m { optional group a (LIST) { repeated int32 array; } }", &["a"]),
            ("message m { optional group a (LIST) { repeated group array { required int32 x; } } }", &["a.x"]),
            ("message m { optional group a (LIST) { repeated group a_tuple { required int32 x; } } }", &["a.x"]),
            ("message m { optional group m (MAP) { repeated group key_value { required binary key; optional int32 value; } } }",
                &["m.key", "m.value"]),
            ("message m { optional group m (MAP) { repeated group map { required binary key; \
                optional group value (MAP) { repeated group key_value { required int32 key; optional boolean value; } } } } }",
                &["m.key", "m.value.key", "m.value.value"]),
            ("message m { optional group grid (LIST) { repeated group list { optional group element (LIST) { \
                repeated group list { optional int32 element; } } } } }", &["grid"]),
            ("message m { optional group phones { repeated group phone { required int64 number; } } }",
                &["phones.phone.number"]),
            ("message m { optional group a (LIST) { repeated group array (LIST) { repeated int32 array; } } }",
                &["a"]),
        ];
        for (message, want) in cases {
            assert_eq!(names(message), *want, "{message}");
        }
    }
}
