//! What `flowprior sql` agrees to run, decided from the text before SQLite sees it: exactly one
//! statement, and one that reads (SELECT, WITH, VALUES, EXPLAIN, or a PRAGMA that sets nothing).
//! Deciding first matters: some statements act before a read-only connection can refuse them
//! (`VACUUM INTO 'file'` creates its file), and SQLite would run every statement of a list.

use super::StoreError;

/// The statement kinds that only read.
pub const READ_KEYWORDS: [&str; 5] = ["SELECT", "WITH", "VALUES", "EXPLAIN", "PRAGMA"];

/// The statement's text with comments and quoted literals blanked out (so that a `;` or keyword
/// inside them does not count), as a list of statements (split at `;`, empty ones dropped).
fn statements(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '-' if next == Some('-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                current.push(' ');
                continue;
            }
            '/' if next == Some('*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
                current.push(' ');
                continue;
            }
            '\'' | '"' | '`' | '[' => {
                let close = if c == '[' { ']' } else { c };
                // A quoted literal or identifier: doubled quotes escape themselves.
                i += 1;
                loop {
                    match chars.get(i) {
                        None => break,
                        Some(&q) if q == close => {
                            if close != ']' && chars.get(i + 1) == Some(&close) {
                                i += 2;
                                continue;
                            }
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                current.push_str(" x ");
                continue;
            }
            ';' => {
                if !current.trim().is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                current.clear();
            }
            _ => current.push(c),
        }
        i += 1;
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// Checks that `sql` is one statement that reads; the error says what was found and what is run.
pub fn check_read_statement(sql: &str) -> Result<(), StoreError> {
    let list = statements(sql);
    let stmt = match list.as_slice() {
        [] => return Err(StoreError::Query("no SQL statement given".into())),
        [one] => one,
        many => {
            return Err(StoreError::Query(format!(
                "{} statements given; `flowprior sql` runs exactly one (remove the `;` between them \
                 and run each on its own)",
                many.len()
            )));
        }
    };
    let keyword: String = stmt
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    if !READ_KEYWORDS.contains(&keyword.as_str()) {
        return Err(StoreError::ReadOnly(format!(
            "`{}` is not run: only statements that read are ({})",
            if keyword.is_empty() { "?" } else { &keyword },
            READ_KEYWORDS.join(", ")
        )));
    }
    if keyword == "PRAGMA" && stmt.contains('=') {
        return Err(StoreError::ReadOnly(
            "a PRAGMA that sets a value is not run: only PRAGMA reads are".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reading_statement_passes() {
        for ok in [
            "SELECT 1",
            "  select * from runs;  ",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1)",
            "SELECT ';' AS semi, 'a''b; c' AS quoted -- trailing; comment",
            "/* lead; */ SELECT \"weird;name\" FROM runs_wide",
            "VALUES (1), (2)",
            "EXPLAIN QUERY PLAN SELECT * FROM metrics",
            "PRAGMA table_info(runs)",
            "SELECT 1;;  ",
        ] {
            assert!(check_read_statement(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn several_statements_are_refused_with_their_count() {
        let e = check_read_statement("SELECT 1 AS a; SELECT 2 AS b, 3 AS c").unwrap_err();
        assert!(e.to_string().contains("2 statements given"), "{e}");
        let e = check_read_statement("SELECT 1; -- x\n SELECT 2; SELECT 3").unwrap_err();
        assert!(e.to_string().contains("3 statements given"), "{e}");
    }

    #[test]
    fn writes_and_file_creating_statements_are_refused_before_running() {
        for bad in [
            "VACUUM INTO '/tmp/x.db'",
            "  vacuum",
            "ATTACH DATABASE 'x.db' AS x",
            "DELETE FROM runs",
            "UPDATE runs SET status = 'failed'",
            "DROP TABLE runs",
            "INSERT INTO runs VALUES (1)",
            "PRAGMA query_only = OFF",
            "REINDEX",
        ] {
            let e = check_read_statement(bad).unwrap_err();
            assert!(matches!(e, StoreError::ReadOnly(_)), "{bad}: {e}");
        }
        assert!(matches!(
            check_read_statement("  -- nothing\n"),
            Err(StoreError::Query(_))
        ));
    }
}
