//! Sync/async twins of binding methods, generated from one definition.

/// One `#[pymethods]` block: the `plain` methods as written and, for each twin
/// `fn name / aname <'py> (&self, py: Python<'py>, args…) -> T { body }`, two methods with the
/// same signature: `name`, which waits for the body's future with the GIL released and Ctrl-C
/// honoured ([`crate::bindings::runtime::wait`]), and `aname`, which returns it as an awaitable.
/// The body runs with the GIL (reading the arguments) and evaluates to a `'static` future of
/// `crate::error::Result<T>`.
macro_rules! pymethods_with_twins {
    (
        $class:ty;
        plain { $($plain:tt)* }
        twins {
            $(
                $(#[$meta:meta])*
                fn $sync:ident / $asynchronous:ident <$lt:lifetime> (
                    &$self:ident, $py:ident : Python<$pylt:lifetime>
                    $(, $(#[$argmeta:meta])* $arg:ident : $ty:ty)* $(,)?
                ) -> $ret:ty $body:block
            )*
        }
    ) => {
        #[pyo3::pymethods]
        impl $class {
            $($plain)*
            $(
                $(#[$meta])*
                fn $sync<$lt>(
                    &$self,
                    $py: Python<$pylt>
                    $(, $(#[$argmeta])* $arg: $ty)*
                ) -> PyResult<$ret> {
                    let future = $body;
                    $crate::bindings::runtime::wait($py, future)
                }

                $(#[$meta])*
                fn $asynchronous<$lt>(
                    &$self,
                    $py: Python<$pylt>
                    $(, $(#[$argmeta])* $arg: $ty)*
                ) -> PyResult<Bound<$lt, PyAny>> {
                    let future = $body;
                    $crate::bindings::runtime::awaitable($py, future)
                }
            )*
        }
    };
}

pub(crate) use pymethods_with_twins;
