//! From TOML text to the raw types, one key at a time: every unknown key,
//! value of the wrong type and missing key in the file is a problem of its
//! own, instead of the first one ending the parse as a serde derive would.
//! The messages are serde's, as toml printed them before.

use std::ops::Range;

use serde::de::{
    DeserializeOwned, Error as _, Unexpected,
    value::{Error as SerdeError, StrDeserializer},
};
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

/// A parsed TOML value and where it is.
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

/// Something wrong at a byte span of the file.
pub(super) type Problem = (Range<usize>, String);

/// The parsed document, or its syntax errors in file order, all of them
/// (toml recovers and goes on).
pub(super) fn parse(text: &str) -> Result<Spanned<DeTable<'_>>, Vec<Problem>> {
    let (doc, errors) = DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Ok(doc);
    }
    let mut problems: Vec<Problem> = errors
        .iter()
        .map(|e| (e.span().unwrap_or(0..0), toml_message(e)))
        .collect();
    problems.sort_by_key(|(span, _)| span.start);
    Err(problems)
}

/// toml's message on one line, without a trailing newline.
fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let msg = msg.lines().map(str::trim).collect::<Vec<_>>().join("; ");
    if msg.is_empty() {
        "invalid TOML".to_owned()
    } else {
        msg
    }
}

/// A table whose keys have been checked against the ones it may have.
pub(super) struct Table<'a, 'i> {
    span: Range<usize>,
    map: &'a DeTable<'i>,
    fields: &'static [&'static str],
    /// Keys set to a value that could not be read (a problem says why):
    /// the rules that depend on them must not take them for absent.
    pub unreadable: Vec<&'static str>,
}

impl Table<'_, '_> {
    /// Whether an unknown key of the table looks like `field` misspelt.
    fn misspelt(&self, field: &str) -> bool {
        self.map.keys().any(|k| {
            let k: &str = k.get_ref();
            !self.fields.contains(&k) && strsim::damerau_levenshtein(k, field) <= 2
        })
    }
}

/// Collects the problems; a value with one is left out (None), so that
/// reading goes on with the rest.
#[derive(Default)]
pub(super) struct Reader {
    pub problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, span: Range<usize>, message: impl ToString) {
        self.problems.push((span, message.to_string()));
    }

    fn wrong_type(&mut self, v: &Value<'_>, expected: &str) {
        let float = v.get_ref().as_float().and_then(|f| f.as_str().parse().ok());
        let unexpected = match v.get_ref() {
            DeValue::String(s) => Unexpected::Str(s),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Unexpected::Signed(n),
                Err(_) => Unexpected::Other("integer"),
            },
            DeValue::Float(_) => float.map_or(Unexpected::Other("float"), Unexpected::Float),
            DeValue::Boolean(b) => Unexpected::Bool(*b),
            DeValue::Datetime(_) => Unexpected::Other("datetime"),
            DeValue::Array(_) => Unexpected::Seq,
            DeValue::Table(_) => Unexpected::Map,
        };
        let e = SerdeError::invalid_type(unexpected, &expected);
        self.problem(v.span(), e);
    }

    /// The document itself as a table with the keys in `fields`.
    pub fn root<'a, 'i>(
        &mut self,
        doc: &'a Spanned<DeTable<'i>>,
        fields: &'static [&'static str],
    ) -> Table<'a, 'i> {
        self.known_keys(doc.get_ref(), fields);
        Table {
            span: doc.span(),
            map: doc.get_ref(),
            fields,
            unreadable: Vec::new(),
        }
    }

    /// `v` as a table whose keys are all in `fields`: an unknown key is a
    /// problem at the key, and is skipped.
    pub fn table<'a, 'i>(
        &mut self,
        v: &'a Value<'i>,
        fields: &'static [&'static str],
    ) -> Option<Table<'a, 'i>> {
        let Some(map) = v.get_ref().as_table() else {
            self.wrong_type(v, "a table");
            return None;
        };
        self.known_keys(map, fields);
        Some(Table {
            span: v.span(),
            map,
            fields,
            unreadable: Vec::new(),
        })
    }

    fn known_keys(&mut self, map: &DeTable<'_>, fields: &'static [&'static str]) {
        for key in map.keys() {
            if !fields.contains(&key.get_ref().as_ref()) {
                self.problem(key.span(), SerdeError::unknown_field(key.get_ref(), fields));
            }
        }
    }

    /// The value of `key`, read by `read`, if `t` has that key.
    pub fn optional<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &Value<'_>) -> Option<T>,
    ) -> Option<T> {
        let value = read(self, t.map.get(key)?);
        if value.is_none() {
            t.unreadable.push(key);
        }
        value
    }

    /// As [`Reader::optional`]; a missing key is a problem at the table,
    /// unless an unknown key there is likely it misspelt (that key's
    /// problem names the expected ones).
    pub fn required<T>(
        &mut self,
        t: &mut Table<'_, '_>,
        key: &'static str,
        read: impl FnOnce(&mut Self, &Value<'_>) -> Option<T>,
    ) -> Option<T> {
        if !t.map.contains_key(key) && !t.misspelt(key) {
            self.problem(t.span.clone(), SerdeError::missing_field(key));
        }
        self.optional(t, key, read)
    }

    pub fn string(&mut self, v: &Value<'_>) -> Option<Spanned<String>> {
        match v.get_ref().as_str() {
            Some(s) => Some(Spanned::new(v.span(), s.to_owned())),
            None => {
                self.wrong_type(v, "a string");
                None
            }
        }
    }

    /// An integer of any size: one beyond i128 is held as i128's bound on
    /// its side, and the range check that follows reports it as written.
    pub fn integer(&mut self, v: &Value<'_>) -> Option<Spanned<i128>> {
        let Some(i) = v.get_ref().as_integer() else {
            self.wrong_type(v, "an integer");
            return None;
        };
        let n =
            i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(if i.as_str().starts_with('-') {
                i128::MIN
            } else {
                i128::MAX
            });
        Some(Spanned::new(v.span(), n))
    }

    pub fn boolean(&mut self, v: &Value<'_>) -> Option<Spanned<bool>> {
        match v.get_ref().as_bool() {
            Some(b) => Some(Spanned::new(v.span(), b)),
            None => {
                self.wrong_type(v, "a boolean");
                None
            }
        }
    }

    /// One of the names of a unit-variant enum.
    pub fn choice<T: DeserializeOwned>(&mut self, v: &Value<'_>) -> Option<Spanned<T>> {
        let Some(s) = v.get_ref().as_str() else {
            self.wrong_type(v, "a string");
            return None;
        };
        match T::deserialize(StrDeserializer::<SerdeError>::new(s)) {
            Ok(t) => Some(Spanned::new(v.span(), t)),
            Err(e) => {
                self.problem(v.span(), e);
                None
            }
        }
    }

    /// An array of strings; an element of another type is a problem of its
    /// own and is left out.
    pub fn strings(&mut self, v: &Value<'_>) -> Option<Spanned<Vec<Spanned<String>>>> {
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(v, "a sequence");
            return None;
        };
        let strings = items.iter().filter_map(|s| self.string(s)).collect();
        Some(Spanned::new(v.span(), strings))
    }

    /// An array of tables (`[[name]]`), each read by `read`.
    pub fn tables<T>(
        &mut self,
        v: &Value<'_>,
        mut read: impl FnMut(&mut Self, &Value<'_>) -> Option<Spanned<T>>,
    ) -> Option<Vec<Spanned<T>>> {
        let Some(items) = v.get_ref().as_array() else {
            self.wrong_type(v, "a sequence");
            return None;
        };
        Some(items.iter().filter_map(|t| read(self, t)).collect())
    }
}
