//! Database URLs: the database or login swapped, and the password hidden
//! from anything shown.

/// `url` with its database name replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// The database name in `url` (its path), if any.
#[cfg(any(feature = "pg-server", feature = "mysql-server", test))]
pub(crate) fn database_name(url: &str) -> Option<&str> {
    let base = url.split_once('?').map_or(url, |(base, _)| base);
    let authority_end = base.find("://")? + 3;
    let path = &base[authority_end..];
    let name = &path[path.find('/')? + 1..];
    (!name.is_empty()).then_some(name)
}

/// `url` with its credentials replaced by `user` and `password`
/// (percent-encoded).
pub fn with_login(url: &str, user: &str, password: &str) -> String {
    let Some(authority_start) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let host = rest[..authority_end].rsplit_once('@').map_or(&rest[..authority_end], |(_, host)| host);
    format!(
        "{}{}:{}@{host}{}",
        &url[..authority_start],
        percent_encode(user),
        percent_encode(password),
        &rest[authority_end..]
    )
}

/// `url` with any password replaced by `***`, in the credentials and in a
/// `password=` query parameter: what messages may show.
pub fn redacted(url: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let base = match base.find("://").map(|i| i + 3) {
        None => base.to_owned(),
        Some(authority_start) => {
            let rest = &base[authority_start..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((credentials, host)) if credentials.contains(':') => {
                    let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
                    format!("{}{user}:***@{host}{}", &base[..authority_start], &rest[authority_end..])
                }
                _ => base.to_owned(),
            }
        }
    };
    let Some(query) = query else { return base };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// The password in `url` (in its credentials or a `password=` parameter),
/// as written and percent-decoded: what [`scrubbed`] hides.
fn passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    if let Some(start) = base.find("://").map(|i| i + 3) {
        let rest = &base[start..];
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        if let Some((credentials, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = credentials.split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some((key, value)) = pair.split_once('=')
            && key.eq_ignore_ascii_case("password")
        {
            found.push(value.to_owned());
        }
    }
    let decoded: Vec<String> = found.iter().map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    found.retain(|p| !p.is_empty());
    // Longest first, so a password containing another is hidden whole.
    found.sort_by_key(|p| std::cmp::Reverse(p.len()));
    found.dedup();
    found
}

/// `text` (an error message, a log line) with `url` shown only redacted and
/// its password nowhere, also where a driver quoted it decoded.
pub fn scrubbed(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redacted(url));
    for password in passwords(url) {
        out = out.replace(&password, "***");
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(feature = "pg-server")]
pub(crate) fn postgres_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(feature = "mysql-server")]
pub(crate) fn mysql_identifier(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::{database_name, redacted, scrubbed, with_database, with_login};

    #[test]
    fn scrubbing_hides_the_password_as_written_and_decoded() {
        let url = "postgres://app:s%40cret@h:1/db?x=1";
        let message = format!("error connecting to {url}: password s@cret rejected (s%40cret)");
        let clean = scrubbed(&message, url);
        assert!(!clean.contains("s@cret") && !clean.contains("s%40cret"), "{clean}");
        assert!(clean.contains("postgres://app:***@h:1/db?x=1"), "{clean}");
        assert_eq!(scrubbed("refused", "postgres://u@h/db"), "refused");
        assert_eq!(scrubbed("x secret y", "mysql://h/db?password=secret"), "x *** y");
    }

    #[test]
    fn logins_replace_the_credentials_and_never_show_the_password() {
        assert_eq!(
            with_login("postgres://postgres@127.0.0.1:5432/gov?sslmode=disable", "app", "p@ss/w:rd"),
            "postgres://app:p%40ss%2Fw%3Ard@127.0.0.1:5432/gov?sslmode=disable"
        );
        assert_eq!(with_login("mysql://root:old@h/db", "a", "b"), "mysql://a:b@h/db");
        assert_eq!(with_login("mysql://h", "a", "b"), "mysql://a:b@h");
        assert_eq!(redacted("mysql://a:secret@h:3306/db?x=1"), "mysql://a:***@h:3306/db?x=1");
        assert_eq!(redacted("postgres://p%40ss:se@cret@h/db"), "postgres://p%40ss:***@h/db");
        assert_eq!(redacted("postgres://postgres@h/db"), "postgres://postgres@h/db");
        assert_eq!(redacted("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redacted("postgres://h/db?user=u&password=secret&x=1"), "postgres://h/db?user=u&password=***&x=1");
        assert_eq!(redacted("mysql://a:s@h/db?PASSWORD=secret"), "mysql://a:***@h/db?PASSWORD=***");
        assert_eq!(redacted("postgres://h/db?sslmode=disable"), "postgres://h/db?sslmode=disable");
        let url = with_login("postgres://postgres@h/db", "app", "secret");
        assert!(!redacted(&url).contains("secret"));
        assert_eq!(database_name("postgres://u@h:1/gov_cf_1?x=y"), Some("gov_cf_1"));
        assert_eq!(database_name("postgres://u@h:1/"), None);
        assert_eq!(database_name("postgres://u@h:1"), None);
    }

    #[test]
    fn replaces_the_database_name_only() {
        assert_eq!(with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled", "x"),
            "mysql://root@127.0.0.1:3306/x?ssl-mode=disabled"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
