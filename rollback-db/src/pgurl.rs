//! PostgreSQL connection URLs: split so the password reaches a child process through
//! `PGPASSWORD`, never its command line (where `ps` would show it).

use rollback_core::{Error, Result, Secret};

/// The parts of `postgres://user:password@host:port/database`.
#[derive(Debug, Clone)]
pub struct PgUrl {
    /// User.
    pub user: String,
    /// Password (never printed).
    pub password: Option<Secret>,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub database: String,
}

impl PgUrl {
    /// Parses a URL; errors never repeat it (it may hold a password).
    ///
    /// ```
    /// use rollback_db::PgUrl;
    /// let url = PgUrl::parse("postgres://app:s3cr3t@127.0.0.1:5433/orders").unwrap();
    /// assert_eq!((url.user.as_str(), url.host.as_str(), url.port, url.database.as_str()), ("app", "127.0.0.1", 5433, "orders"));
    /// assert_eq!(url.password.unwrap().expose(), "s3cr3t");
    /// assert!(!PgUrl::parse("mysql://x:s3cr3t@h/db").unwrap_err().to_string().contains("s3cr3t"));
    /// ```
    pub fn parse(url: &str) -> Result<PgUrl> {
        let bad = |why: &str| Error::invalid_input(format!("bad PostgreSQL URL ({why}; the URL is not shown)"));
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("expected postgres://"))?;
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (user, password) = match auth.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(Secret::new(p))),
            None => (auth.to_owned(), None),
        };
        let (hostport, database) = rest.split_once('/').ok_or_else(|| bad("no database"))?;
        let database = database.split('?').next().unwrap_or_default().to_owned();
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
            None => (hostport.to_owned(), 5432),
        };
        if database.is_empty() || host.is_empty() {
            return Err(bad("no host or database"));
        }
        Ok(PgUrl { user: if user.is_empty() { "postgres".into() } else { user }, password, host, port, database })
    }

    /// `-h host -p port -U user -d database` for libpq tools.
    pub fn tool_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
            "-U".into(),
            self.user.clone(),
            "-d".into(),
            self.database.clone(),
        ]
    }

    /// The environment a libpq tool needs: the password, if any, as `PGPASSWORD`.
    pub fn tool_env(&self) -> Vec<(&'static str, &str)> {
        self.password.iter().map(|p| ("PGPASSWORD", p.expose())).collect()
    }
}
