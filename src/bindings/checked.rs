//! Argument readers (`#[pyo3(from_py_with = …)]`) that refuse a bad argument with a
//! `ConfigError` naming the value, where plain extraction raised `OverflowError` (an integer
//! out of range), `TypeError` (a wrong type) or `UnicodeEncodeError` (a lone surrogate).

use crate::bindings::errors::config_error;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyString};

/// `repr(value)` for an error message, cut to 80 characters.
fn shown(value: &Bound<'_, PyAny>) -> String {
    let text = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into());
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default()
}

macro_rules! int_reader {
    ($name:ident, $optional:ident, $t:ty) => {
        /// An integer in the range of the type, else a `ConfigError` naming the value.
        pub(crate) fn $name(value: &Bound<'_, PyAny>) -> PyResult<$t> {
            if !value.is_instance_of::<PyInt>() {
                return Err(config_error(format!(
                    "expected an integer, got {} (type {})",
                    shown(value),
                    type_name(value)
                )));
            }
            value.extract::<$t>().map_err(|_| {
                config_error(format!(
                    "{} is out of range: expected an integer from {} to {}",
                    shown(value),
                    <$t>::MIN,
                    <$t>::MAX
                ))
            })
        }

        /// [`$name`], with `None` allowed.
        #[allow(dead_code)]
        pub(crate) fn $optional(value: &Bound<'_, PyAny>) -> PyResult<Option<$t>> {
            if value.is_none() {
                Ok(None)
            } else {
                $name(value).map(Some)
            }
        }
    };
}

int_reader!(int32, optional_int32, i32);
int_reader!(int64, optional_int64, i64);
int_reader!(size, optional_size, usize);

/// A list of integers (item ids).
pub(crate) fn int64s(value: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    if value.is_instance_of::<PyString>() {
        return Err(config_error(format!(
            "expected a list of integers, got a str {}",
            shown(value)
        )));
    }
    let iterator = value.try_iter().map_err(|_| {
        config_error(format!(
            "expected a list of integers, got {} (type {})",
            shown(value),
            type_name(value)
        ))
    })?;
    iterator.map(|v| int64(&v?)).collect()
}

/// A finite or infinite number (`int` or `float`; the duration rules of `validate` apply
/// after), else a `ConfigError` naming the value.
pub(crate) fn number(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    if !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>()) {
        return Err(config_error(format!(
            "expected a number of seconds, got {} (type {})",
            shown(value),
            type_name(value)
        )));
    }
    value
        .extract::<f64>()
        .map_err(|_| config_error(format!("{} is too large a number", shown(value))))
}

/// [`number`], with `None` allowed.
pub(crate) fn optional_number(value: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    if value.is_none() {
        Ok(None)
    } else {
        number(value).map(Some)
    }
}

/// A `str` holding valid Unicode (no lone surrogate), else a `ConfigError` naming the value.
pub(crate) fn text(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let Ok(string) = value.cast::<PyString>() else {
        return Err(config_error(format!(
            "expected a string, got {} (type {})",
            shown(value),
            type_name(value)
        )));
    };
    string.to_str().map(str::to_owned).map_err(|_| {
        config_error(format!(
            "{} is not valid Unicode text: it holds a lone surrogate (\\ud800-\\udfff), which \
             no database can store",
            shown(value)
        ))
    })
}

/// [`text`], with `None` allowed.
pub(crate) fn optional_text(value: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    if value.is_none() {
        Ok(None)
    } else {
        text(value).map(Some)
    }
}

/// A list (any iterable but a `str`) of [`text`]s.
pub(crate) fn texts(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if value.is_instance_of::<PyString>() {
        return Err(config_error(format!(
            "expected a list of strings, got the str {}: wrap it in a list",
            shown(value)
        )));
    }
    let iterator = value.try_iter().map_err(|_| {
        config_error(format!(
            "expected a list of strings, got {} (type {})",
            shown(value),
            type_name(value)
        ))
    })?;
    iterator.map(|v| text(&v?)).collect()
}

/// [`texts`], with `None` allowed.
pub(crate) fn optional_texts(value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<String>>> {
    if value.is_none() {
        Ok(None)
    } else {
        texts(value).map(Some)
    }
}

/// A list (any iterable but a `str` or a mapping) of objects, for `enqueue_many`.
pub(crate) fn objects<'py>(value: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if value.is_instance_of::<PyString>() || value.is_instance_of::<pyo3::types::PyDict>() {
        return Err(config_error(format!(
            "expected a list of dicts, got {} (type {}): wrap one item in a list",
            shown(value),
            type_name(value)
        )));
    }
    let iterator = value.try_iter().map_err(|_| {
        config_error(format!(
            "expected a list of dicts, got {} (type {})",
            shown(value),
            type_name(value)
        ))
    })?;
    iterator.collect()
}
