//! serde plumbing shared by the ground-truth and results loaders: arrays of records parsed
//! straight into typed structs while remembering which record is being read, so that an error
//! names it (`annotations[12]`), and tolerant scalar readers matching Python's truthiness.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::CocoError;

/// Where the parser is: the array being read and the index of the record inside it.
#[derive(Default)]
pub(crate) struct Locator {
    section: Cell<Option<&'static str>>,
    index: Cell<Option<usize>>,
}

impl Locator {
    pub(crate) fn enter(&self, section: &'static str) {
        self.section.set(Some(section));
        self.index.set(None);
    }

    pub(crate) fn leave(&self) {
        self.section.set(None);
        self.index.set(None);
    }

    /// `section[index]`, `section` or nothing, for an error message.
    pub(crate) fn describe(&self) -> Option<String> {
        let section = self.section.get()?;
        Some(match self.index.get() {
            Some(i) => format!("{section}[{i}]"),
            None => section.to_string(),
        })
    }

    pub(crate) fn json_error(&self, origin: &str, error: serde_json::Error) -> CocoError {
        CocoError::Json { origin: origin.to_string(), record: self.describe(), error }
    }
}

/// A JSON array of `T`, read element by element with the index kept in a [`Locator`].
pub(crate) struct Records<'a, T> {
    loc: &'a Locator,
    section: &'static str,
    marker: PhantomData<fn() -> T>,
}

impl<'a, T> Records<'a, T> {
    pub(crate) fn new(loc: &'a Locator, section: &'static str) -> Self {
        Self { loc, section, marker: PhantomData }
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Records<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        self.loc.enter(self.section);
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Records<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of {} records", self.section)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Vec<T>, S::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            self.loc.index.set(Some(out.len()));
            match seq.next_element()? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        self.loc.leave();
        Ok(out)
    }
}

/// A number that only some tools need (image sizes): kept when it is a number, else `None`, so
/// that no file the evaluator accepts is refused because of it.
pub(crate) fn number_or_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(serde_json::Value::deserialize(d)?.as_f64())
}

/// Reads `iscrowd` as Python's truthiness would see it: booleans, and numbers (non-zero is crowd).
pub(crate) fn truthy<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Truthy;
    impl Visitor<'_> for Truthy {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean or a number")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
            Ok(v != 0.0)
        }
    }
    d.deserialize_any(Truthy)
}

/// Runs `seed` over the whole of `bytes`, rejecting trailing garbage.
pub(crate) fn parse_slice<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
    loc: &Locator,
    origin: &str,
) -> Result<S::Value, CocoError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = seed.deserialize(&mut de).map_err(|e| loc.json_error(origin, e))?;
    loc.leave();
    de.end().map_err(|e| loc.json_error(origin, e))?;
    Ok(value)
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CocoError> {
    std::fs::read(path).map_err(|error| CocoError::Io { path: path.to_path_buf(), error })
}
