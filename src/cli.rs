//! Command-line parsing shared by the binaries, on top of `lexopt`: every
//! mistake is one line that names the flag and the bad value, and nothing
//! here (nor any output helper) can panic, even with stdout closed.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub use lexopt::Arg;

/// A command-line mistake, as one line without the program's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        use lexopt::Error::*;
        UsageError(match e {
            MissingValue { option: Some(o) } => format!("{o}: missing value"),
            MissingValue { option: None } => "missing value".into(),
            UnexpectedOption(o) => format!("unknown option {o}"),
            UnexpectedArgument(a) => format!("unexpected argument {:?}", a.to_string_lossy()),
            UnexpectedValue { option, value } => {
                format!(
                    "{option}: takes no value (got {:?})",
                    value.to_string_lossy()
                )
            }
            ParsingFailed { value, error } => format!("invalid value {value:?}: {error}"),
            NonUnicodeValue(v) => {
                format!("invalid value {:?}: not valid UTF-8", v.to_string_lossy())
            }
            Custom(e) => e.to_string(),
        })
    }
}

/// `FLAG: invalid value "VALUE": WHY`.
pub fn invalid(flag: &str, value: &str, why: impl fmt::Display) -> UsageError {
    UsageError(format!("{flag}: invalid value {value:?}: {why}"))
}

/// Arguments, one at a time; [`Parser::value`] and friends read the
/// value of the option [`Parser::next`] returned last.
pub struct Parser {
    inner: lexopt::Parser,
    /// The last option seen, as typed (`--addr`, `-h`).
    flag: String,
}

impl Parser {
    pub fn from_env() -> Parser {
        Parser {
            inner: lexopt::Parser::from_env(),
            flag: String::new(),
        }
    }

    /// For tests: `args` without the program name.
    pub fn from_args<I: IntoIterator<Item = S>, S: Into<OsString>>(args: I) -> Parser {
        Parser {
            inner: lexopt::Parser::from_args(args),
            flag: String::new(),
        }
    }

    /// The next argument; not an `Iterator` because the argument
    /// borrows the parser, whose value methods read what follows it.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Arg<'_>>, UsageError> {
        let arg = self.inner.next()?;
        self.flag = match &arg {
            Some(Arg::Long(name)) => format!("--{name}"),
            Some(Arg::Short(c)) => format!("-{c}"),
            _ => String::new(),
        };
        Ok(arg)
    }

    /// The option [`Parser::next`] returned last, as typed.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// The raw value of the current option: `--flag=VALUE` or
    /// `--flag VALUE`. A separate value that starts with `--` is taken
    /// as a forgotten value (`--addr --data-dir X`), not as the value.
    pub fn os_value(&mut self) -> Result<OsString, UsageError> {
        if let Some(value) = self.inner.optional_value() {
            return Ok(value);
        }
        let value = self.inner.value()?;
        if value.to_string_lossy().starts_with("--") {
            return Err(UsageError(format!(
                "{}: missing value (found the option {} instead)",
                self.flag,
                value.to_string_lossy()
            )));
        }
        Ok(value)
    }

    /// A non-empty UTF-8 value.
    pub fn value(&mut self) -> Result<String, UsageError> {
        let value = self.os_value()?;
        let flag = &self.flag;
        let value = value
            .into_string()
            .map_err(|v| invalid(flag, &v.to_string_lossy(), "not valid UTF-8"))?;
        if value.is_empty() {
            return Err(invalid(flag, "", "must not be empty"));
        }
        Ok(value)
    }

    /// A non-empty path (any bytes).
    pub fn path(&mut self) -> Result<PathBuf, UsageError> {
        let value = self.os_value()?;
        if value.is_empty() {
            return Err(invalid(&self.flag, "", "must not be empty"));
        }
        Ok(value.into())
    }

    /// A whole number from `min` to `max`.
    pub fn number(&mut self, min: u64, max: u64) -> Result<u64, UsageError> {
        let value = self.value()?;
        let range = if max == u64::MAX {
            format!("must be at least {min}")
        } else {
            format!("must be from {min} to {max}")
        };
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                &self.flag,
                &value,
                format!("not a whole number ({range})"),
            ));
        }
        match value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(invalid(&self.flag, &value, range)),
        }
    }

    /// [`Parser::number`] as a `usize`.
    pub fn count(&mut self, min: usize, max: usize) -> Result<usize, UsageError> {
        let n = self.number(min as u64, max as u64)?;
        Ok(usize::try_from(n).unwrap_or(max))
    }

    /// A number greater than 0 and at most `max` (fractions allowed).
    pub fn positive_float(&mut self, max: f64, unit: &str) -> Result<f64, UsageError> {
        self.float(false, max, unit)
    }

    /// A number from 0 to `max` (fractions allowed).
    pub fn float_from_zero(&mut self, max: f64, unit: &str) -> Result<f64, UsageError> {
        self.float(true, max, unit)
    }

    fn float(&mut self, zero: bool, max: f64, unit: &str) -> Result<f64, UsageError> {
        let value = self.value()?;
        let range = if zero {
            format!("must be from 0 to {max} {unit}")
        } else {
            format!("must be more than 0 and at most {max} {unit}")
        };
        match value.parse::<f64>() {
            Ok(x) if (x > 0.0 || (zero && x == 0.0)) && x <= max => Ok(x),
            Ok(_) => Err(invalid(&self.flag, &value, range)),
            Err(_) => Err(invalid(
                &self.flag,
                &value,
                format!("not a number ({range})"),
            )),
        }
    }

    /// The value, which must be one of `choices`.
    pub fn choice(&mut self, choices: &[&'static str]) -> Result<&'static str, UsageError> {
        let value = self.value()?;
        choices
            .iter()
            .find(|&&c| c == value)
            .copied()
            .ok_or_else(|| {
                let list = match choices {
                    [] => String::new(),
                    [one] => one.to_string(),
                    [init @ .., last] => format!("{} or {last}", init.join(", ")),
                };
                invalid(&self.flag, &value, format!("must be {list}"))
            })
    }
}

/// The error for an argument no arm of a `match` took.
pub fn unexpected(arg: Arg<'_>) -> UsageError {
    arg.unexpected().into()
}

/// Writes `text` to stdout and flushes, ignoring errors: output to a
/// closed pipe (`broker --help | true`) is dropped silently instead of
/// panicking like `print!`.
pub fn out(text: impl AsRef<[u8]>) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(text.as_ref());
    let _ = stdout.flush();
}

/// `out` for stderr.
pub fn err(text: impl AsRef<[u8]>) {
    let _ = io::stderr().lock().write_all(text.as_ref());
}

/// Reports a command-line mistake in one line plus a pointer to
/// `--help`; exit status 2.
pub fn usage_error(program: &str, e: &UsageError) -> ExitCode {
    err(format!("{program}: {e}\nTry '{program} --help'.\n"));
    ExitCode::from(2)
}
