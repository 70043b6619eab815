//! `runs_wide`: one row per run with its parameters (`p_<key>`) and final metric values (`m_<key>`) as
//! columns, for ad-hoc SQL. The set of columns depends on the keys recorded so far, so the view is
//! regenerated whenever that set changes (on open, when a run ends, and before `flowprior sql`).

use std::collections::BTreeSet;

use super::{Engine, Result, Store, sql_err};

/// Name of the wide view.
pub const RUNS_WIDE: &str = "runs_wide";

/// The longest column name made (room for a `_N` suffix within PostgreSQL's 63 bytes).
const MAX_COLUMN_NAME: usize = 58;

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Column name for a key: lowercase ASCII letters, digits and `_`; anything else becomes `_`.
fn column_name(prefix: &str, key: &str, taken: &mut BTreeSet<String>) -> String {
    let mut base: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    base.insert_str(0, prefix);
    // PostgreSQL keeps the first 63 bytes of a name: shorten long ones before making them unique.
    base.truncate(MAX_COLUMN_NAME);
    let mut name = base.clone();
    let mut i = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// The CREATE VIEW statement for the given parameter keys (with their kinds) and metric keys.
pub(crate) fn runs_wide_sql(params: &[(String, Vec<String>)], metrics: &[String]) -> String {
    let mut taken = BTreeSet::new();
    let mut cols = vec![
        "r.id",
        "r.stage",
        "r.name",
        "r.status",
        "r.backend",
        "r.seed",
        "r.host",
        "r.git_rev",
        "r.config_hash",
        "r.created_at",
        "r.started_at",
        "r.ended_at",
        "r.attempts",
        "r.error",
    ]
    .into_iter()
    .map(|c| {
        taken.insert(c[2..].to_string());
        c.to_string()
    })
    .collect::<Vec<_>>();
    for (key, kinds) in params {
        let value = match kinds.as_slice() {
            [k] if k == "int" || k == "bool" => "int_value".to_string(),
            [k] if k == "real" => "real_value".to_string(),
            [k] if k == "text" => "text_value".to_string(),
            _ => "COALESCE(CAST(int_value AS TEXT), CAST(real_value AS TEXT), text_value)"
                .to_string(),
        };
        let name = column_name("p_", key, &mut taken);
        cols.push(format!(
            "(SELECT {value} FROM params WHERE run_id = r.id AND key = {}) AS \"{name}\"",
            quote_literal(key)
        ));
    }
    for key in metrics {
        let name = column_name("m_", key, &mut taken);
        cols.push(format!(
            "(SELECT value FROM summary WHERE run_id = r.id AND key = {}) AS \"{name}\"",
            quote_literal(key)
        ));
    }
    format!(
        "CREATE VIEW {RUNS_WIDE} AS SELECT {} FROM runs r",
        cols.join(", ")
    )
}

impl Store {
    /// Regenerates `runs_wide` if the recorded parameter or metric keys changed.
    pub fn refresh_runs_wide(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.block_on(async {
            let kinds = sqlx::query_as::<_, ParamKind>(
                "SELECT DISTINCT key, kind FROM params ORDER BY key, kind",
            )
            .fetch_all(self.pool())
            .await?;
            let mut params: Vec<(String, Vec<String>)> = Vec::new();
            for ParamKind { key, kind } in kinds {
                match params.last_mut() {
                    Some((k, ks)) if *k == key => ks.push(kind),
                    _ => params.push((key, vec![kind])),
                }
            }
            let metrics =
                sqlx::query_scalar::<_, String>("SELECT DISTINCT key FROM summary ORDER BY key")
                    .fetch_all(self.pool())
                    .await?;
            let wanted = runs_wide_sql(&params, &metrics);
            // The statement the view was made from: SQLite keeps it; PostgreSQL keeps a rewritten
            // form, so the original is kept as the view's comment.
            let current_sql = match self.engine() {
                Engine::Sqlite => {
                    "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'runs_wide'"
                }
                Engine::Postgres => {
                    "SELECT obj_description(to_regclass('runs_wide'), 'pg_class') AS sql"
                }
            };
            let current = sqlx::query_scalar::<_, Option<String>>(current_sql)
                .fetch_optional(self.pool())
                .await?
                .flatten();
            if current.as_deref() == Some(wanted.as_str()) {
                return Ok(());
            }
            let mut tx = self.begin_write().await?;
            sqlx::query("DROP VIEW IF EXISTS runs_wide")
                .execute(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(wanted.clone()))
                .execute(&mut *tx)
                .await?;
            if self.engine() == Engine::Postgres {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "COMMENT ON VIEW runs_wide IS {}",
                    quote_literal(&wanted)
                )))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        })
        .map_err(sql_err("refresh runs_wide"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_sanitised_and_unique() {
        let mut taken = BTreeSet::new();
        assert_eq!(column_name("m_", "loss/train", &mut taken), "m_loss_train");
        assert_eq!(
            column_name("m_", "loss.train", &mut taken),
            "m_loss_train_2"
        );
        assert_eq!(
            column_name("p_", "Model.Width", &mut taken),
            "p_model_width"
        );
    }

    #[test]
    fn keys_with_quotes_are_escaped() {
        let sql = runs_wide_sql(&[("it's".into(), vec!["int".into()])], &["a\"b".into()]);
        assert!(sql.contains("key = 'it''s'"), "{sql}");
        assert!(sql.contains("AS \"m_a_b\""), "{sql}");
    }
}

/// A parameter key and one kind of value recorded under it.
#[derive(sqlx::FromRow)]
struct ParamKind {
    key: String,
    kind: String,
}
