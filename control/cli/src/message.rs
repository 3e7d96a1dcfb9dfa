//! Errors as the programs print them: one line, each cause once.

/// `error` and its causes on one line, `what: why: why`, leaving out a cause whose text the
/// line already ends with: many errors print their source in their own message and return it
/// as their `source()` too, which `{:#}` would print twice.
///
/// # Examples
/// ```
/// let io = std::io::Error::from_raw_os_error(2);
/// let e = anyhow::Error::new(io).context("opening /run/netns/x: No such file or directory (os error 2)");
/// assert_eq!(
///     xvs_cli::message::one_line(&e),
///     "opening /run/netns/x: No such file or directory (os error 2)"
/// );
/// ```
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::Netns;

    #[test]
    fn each_cause_once() {
        let missing = Netns::resolve("xvs-no-such-netns-anywhere").unwrap_err();
        let line = one_line(&anyhow::Error::new(missing));
        assert_eq!(line.matches("(os error 2)").count(), 1, "{line}");
        assert!(line.starts_with("network namespace \"xvs-no-such-netns-anywhere\" not found"));
        // Causes that add something are kept.
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
    }
}
