//! The typed values a matched url rule hands to its handler.
//!
//! Python Nameko calls `method(self, request, **path_values)` with values already converted by
//! werkzeug (`<int:value>` arrives as an `int`). Rust handlers get the same thing as data: a
//! [`PathValues`] map, in the order the rule declares its variables, of [`PathValue`]s that
//! keep the converter's type. Typed getters serve handlers that read one value; the JSON and
//! serde forms serve code that binds all of them to a struct the way the RPC entrypoint binds
//! keyword arguments.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;

/// One converted path variable.
#[derive(Debug, Clone, PartialEq)]
pub enum PathValue {
    /// From `<int:name>`: ASCII digits, no sign.
    Int(i64),
    /// From `<float:name>`: digits, a dot, digits.
    Float(f64),
    /// From `<name>`, `<string:name>` or `<any(a, b):name>`: one path segment.
    String(String),
    /// From `<uuid:name>`: the canonical 8-4-4-4-12 form, lower-cased.
    Uuid(String),
    /// From `<path:name>`: the rest of the path, segments joined by `/`.
    Path(String),
}

impl PathValue {
    /// The value as text when it was captured as text (every kind but `Int` and `Float`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) | Self::Uuid(s) | Self::Path(s) => Some(s),
            Self::Int(_) | Self::Float(_) => None,
        }
    }

    /// The value as JSON: numbers stay numbers, the rest are strings.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Int(i) => serde_json::Value::from(*i),
            // Converters only produce finite floats, so `from` never yields `null` here.
            Self::Float(f) => serde_json::Value::from(*f),
            Self::String(s) | Self::Uuid(s) | Self::Path(s) => serde_json::Value::from(s.as_str()),
        }
    }
}

impl Serialize for PathValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(i) => serializer.serialize_i64(*i),
            Self::Float(f) => serializer.serialize_f64(*f),
            Self::String(s) | Self::Uuid(s) | Self::Path(s) => serializer.serialize_str(s),
        }
    }
}

/// The variables of a matched rule, by name, in the order the rule declares them.
///
/// A handful of entries at most, so a vector beats a hash map and keeps the declared order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathValues {
    values: Vec<(String, PathValue)>,
}

impl PathValues {
    /// No values, as for a rule without variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value; a later value with the same name replaces the earlier one.
    pub fn insert(&mut self, name: impl Into<String>, value: PathValue) {
        let name = name.into();
        match self.values.iter_mut().find(|(n, _)| *n == name) {
            Some((_, slot)) => *slot = value,
            None => self.values.push((name, value)),
        }
    }

    /// The value called `name`.
    pub fn get(&self, name: &str) -> Option<&PathValue> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The `int` value called `name`; `None` when absent or of another kind.
    pub fn get_int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            PathValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The `float` value called `name`; `None` when absent or of another kind.
    pub fn get_float(&self, name: &str) -> Option<f64> {
        match self.get(name)? {
            PathValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The textual value (`string`, `any`, `uuid` or `path`) called `name`.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_str()
    }

    /// The `uuid` value called `name`, lower-case; `None` when absent or of another kind.
    pub fn get_uuid(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            PathValue::Uuid(u) => Some(u),
            _ => None,
        }
    }

    /// The `path` value called `name`; `None` when absent or of another kind.
    pub fn get_path(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            PathValue::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The names and values, in the rule's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PathValue)> {
        self.values.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values as a JSON object, the shape of Python's `**path_values`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.values
                .iter()
                .map(|(n, v)| (n.clone(), v.to_json()))
                .collect(),
        )
    }

    /// Binds the values to a type by name, as keyword arguments bind to parameters.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.to_json())
    }
}

impl Serialize for PathValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in &self.values {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl FromIterator<(String, PathValue)> for PathValues {
    fn from_iter<I: IntoIterator<Item = (String, PathValue)>>(iter: I) -> Self {
        let mut values = Self::new();
        for (name, value) in iter {
            values.insert(name, value);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PathValues {
        [
            ("id".to_owned(), PathValue::Int(42)),
            ("ratio".to_owned(), PathValue::Float(1.5)),
            ("name".to_owned(), PathValue::String("bob".to_owned())),
            (
                "key".to_owned(),
                PathValue::Uuid("123e4567-e89b-12d3-a456-426614174000".to_owned()),
            ),
            ("rest".to_owned(), PathValue::Path("a/b".to_owned())),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn typed_getters_return_only_their_kind() {
        let values = sample();
        assert_eq!(values.get_int("id"), Some(42));
        assert_eq!(values.get_int("name"), None);
        assert_eq!(values.get_float("ratio"), Some(1.5));
        assert_eq!(values.get_str("name"), Some("bob"));
        assert_eq!(values.get_str("id"), None);
        assert_eq!(
            values.get_uuid("key"),
            Some("123e4567-e89b-12d3-a456-426614174000")
        );
        assert_eq!(values.get_path("rest"), Some("a/b"));
        assert_eq!(values.get_path("missing"), None);
        assert_eq!(values.len(), 5);
        let names: Vec<_> = values.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["id", "ratio", "name", "key", "rest"]);
    }

    #[test]
    fn json_keeps_numbers_as_numbers() {
        let json = sample().to_json();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 42, "ratio": 1.5, "name": "bob",
                "key": "123e4567-e89b-12d3-a456-426614174000", "rest": "a/b"
            })
        );
        assert_eq!(serde_json::to_value(sample()).unwrap(), json);
    }

    #[test]
    fn deserialize_binds_by_name() {
        #[derive(serde::Deserialize)]
        struct Args {
            id: i64,
            name: String,
        }
        let args: Args = sample().deserialize().unwrap();
        assert_eq!(args.id, 42);
        assert_eq!(args.name, "bob");
        assert!(sample().deserialize::<(String,)>().is_err());
    }

    #[test]
    fn insert_replaces_a_value_of_the_same_name() {
        let mut values = PathValues::new();
        values.insert("x", PathValue::Int(1));
        values.insert("x", PathValue::Int(2));
        assert_eq!(values.len(), 1);
        assert_eq!(values.get_int("x"), Some(2));
    }
}
