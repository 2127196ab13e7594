//! Redaction runs before anything is hashed, stored, spooled, exported or
//! logged; the record names the policy (and version) that produced it. The
//! recorder checks the payloads' depth before it, so a policy never sees a
//! document nested deeper than the stores accept.

use std::fmt;

use governance_abstractions::{Evidence, RedactionRef};
use serde_json::Value;

/// Removes sensitive values from evidence in place.
///
/// Implementations must be deterministic: the same evidence redacts to the
/// same result, or idempotent retries would see different content.
pub trait RedactionPolicy: fmt::Debug + Send + Sync {
    /// Stored with every record this policy redacted.
    fn name(&self) -> &str;

    /// Bump it whenever the rules change, so old records stay explainable.
    fn version(&self) -> &str;

    /// Redacts `evidence`'s payloads and free text.
    fn redact(&self, evidence: &mut Evidence);
}

/// Applies `policy` and records it in the evidence.
pub(crate) fn apply(policy: &dyn RedactionPolicy, evidence: &mut Evidence) {
    policy.redact(evidence);
    evidence.redaction = Some(RedactionRef { policy: policy.name().to_owned(), version: policy.version().to_owned() });
}

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// The built-in policy: redacts values by key name (anywhere in the request
/// and response JSON), by JSON pointer (RFC 6901, in either payload), and
/// e-mail addresses in any string, including the free-text reason.
///
/// ```
/// use audit_history::{KeyRedaction, RedactionPolicy};
/// use governance_abstractions::{Actor, ActorKind, Decision, Evidence, WorkspaceId};
/// use serde_json::json;
///
/// let policy = KeyRedaction::standard().pointer("/card/number");
/// let mut evidence = Evidence::decision(
///     WorkspaceId::new("acme").unwrap(),
///     Actor::new(ActorKind::User, "alice"),
///     "invoice",
///     "update",
///     Decision::Approved,
/// );
/// evidence.request_json = Some(json!({
///     "apiToken": "tok_123",
///     "card": { "number": "4111 1111 1111 1111" },
///     "contact": "write to alice@example.com",
/// }));
/// policy.redact(&mut evidence);
/// assert_eq!(
///     evidence.request_json,
///     Some(json!({
///         "apiToken": "[redacted]",
///         "card": { "number": "[redacted]" },
///         "contact": "write to [redacted]",
///     }))
/// );
/// ```
#[derive(Clone)]
pub struct KeyRedaction {
    name: String,
    version: String,
    /// Normalised (lowercase, no `_`/`-`) fragments: a key containing one is redacted.
    keys: Vec<String>,
    /// Normalised keys redacted only on an exact match.
    exact: Vec<String>,
    pointers: Vec<String>,
    emails: bool,
    /// `keys` as one automaton, built on first use: a key is searched once
    /// for every fragment, not once per fragment.
    fragments: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>>,
}

/// Key fragments the standard policy redacts.
const STANDARD_KEYS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "privatekey",
    "sessionid",
    "ssn",
    "cardnumber",
    "cvv",
    "email",
];

/// Short keys redacted only when they are the whole key (as fragments they
/// would hit `author`, `spinner`, `bypass`, …).
const STANDARD_EXACT_KEYS: &[&str] = &["pass", "pwd", "pin", "otp", "auth", "cvc"];

impl std::fmt::Debug for KeyRedaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The rules, not the automaton built from them.
        f.debug_struct("KeyRedaction")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("keys", &self.keys)
            .field("exact", &self.exact)
            .field("pointers", &self.pointers)
            .field("emails", &self.emails)
            .finish_non_exhaustive()
    }
}

impl KeyRedaction {
    /// A policy with no rules (add them with [`key`](Self::key) and [`pointer`](Self::pointer)).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            keys: Vec::new(),
            exact: Vec::new(),
            pointers: Vec::new(),
            emails: false,
            fragments: std::sync::OnceLock::new(),
        }
    }

    /// Tokens, secrets, credentials, cookies, card numbers and e-mail
    /// addresses: policy `standard`, version `1`.
    pub fn standard() -> Self {
        let policy = STANDARD_KEYS.iter().fold(Self::new("standard", "1").emails(true), |policy, key| policy.key(key));
        STANDARD_EXACT_KEYS.iter().fold(policy, |policy, key| policy.exact_key(key))
    }

    /// Redacts every value whose whole key is `key`, ignoring case, `_` and `-`.
    pub fn exact_key(mut self, key: &str) -> Self {
        self.exact.push(normalise(key));
        self
    }

    /// Redacts every value whose key contains `fragment`, ignoring case, `_` and `-`.
    pub fn key(mut self, fragment: &str) -> Self {
        self.keys.push(normalise(fragment));
        self.fragments = std::sync::OnceLock::new();
        self
    }

    /// Redacts the value at `pointer` (e.g. `/card/number`) in either payload.
    pub fn pointer(mut self, pointer: impl Into<String>) -> Self {
        self.pointers.push(pointer.into());
        self
    }

    /// Whether e-mail addresses in string values are redacted.
    pub fn emails(mut self, on: bool) -> Self {
        self.emails = on;
        self
    }

    fn sensitive_key(&self, key: &str) -> bool {
        let mut buffer = [0u8; 64];
        let owned;
        let key = match ascii_normalised(key, &mut buffer) {
            Some(key) => key,
            None => {
                owned = normalise(key);
                owned.as_str()
            }
        };
        let fragment = match self.fragments.get_or_init(|| aho_corasick::AhoCorasick::new(&self.keys).ok()) {
            Some(automaton) => automaton.is_match(key),
            // Only a pattern set beyond the automaton's size limits.
            None => self.keys.iter().any(|fragment| key.contains(fragment.as_str())),
        };
        fragment || self.exact.iter().any(|exact| exact == key)
    }

    /// Redacts `value` everywhere below it. Iterative, like everything that
    /// walks untrusted JSON here: a payload nested too deep to store must
    /// still be safe to redact (the recorder checks the depth first anyway).
    fn walk(&self, value: &mut Value) {
        let mut pending: Vec<&mut Value> = vec![value];
        while let Some(value) = pending.pop() {
            match value {
                Value::Object(map) => {
                    // An e-mail address can be a key too: rename it.
                    let addressed: Vec<String> = if self.emails {
                        map.keys().filter(|k| scrub_emails(k).is_some()).cloned().collect()
                    } else {
                        Vec::new()
                    };
                    for (n, key) in addressed.into_iter().enumerate() {
                        if let Some(value) = map.remove(&key) {
                            let clean = scrub_emails(&key).unwrap_or_default();
                            let name = if n == 0 { clean } else { format!("{clean}#{n}") };
                            if let Some(replaced) = map.insert(name, value) {
                                discard(replaced);
                            }
                        }
                    }
                    for (key, value) in map.iter_mut() {
                        if self.sensitive_key(key) {
                            discard(std::mem::replace(value, Value::String(REDACTED.to_owned())));
                        } else {
                            pending.push(value);
                        }
                    }
                }
                Value::Array(items) => pending.extend(items.iter_mut()),
                Value::String(text) if self.emails => {
                    if let Some(clean) = scrub_emails(text) {
                        *text = clean;
                    }
                }
                _ => {}
            }
        }
    }

    fn payload(&self, payload: &mut Option<Value>) {
        let Some(value) = payload else { return };
        for pointer in &self.pointers {
            if let Some(target) = value.pointer_mut(pointer) {
                discard(std::mem::replace(target, Value::String(REDACTED.to_owned())));
            }
        }
        self.walk(value);
    }
}

impl RedactionPolicy for KeyRedaction {
    fn name(&self) -> &str {
        &self.name
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn redact(&self, evidence: &mut Evidence) {
        self.payload(&mut evidence.request_json);
        self.payload(&mut evidence.response_json);
        if self.emails
            && let Some(clean) = evidence.reason.as_deref().and_then(scrub_emails)
        {
            evidence.reason = Some(clean);
        }
    }
}

/// Drops a redacted value without recursion (serde_json drops recursively).
fn discard(value: Value) {
    let mut pending = vec![value];
    while let Some(mut value) = pending.pop() {
        match &mut value {
            Value::Array(items) => pending.append(items),
            Value::Object(map) => pending.extend(std::mem::take(map).into_iter().map(|(_, child)| child)),
            _ => {}
        }
    }
}

fn normalise(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// [`normalise`] without an allocation, for the usual key: ASCII and no
/// longer than `buffer`. `None` for any other key.
fn ascii_normalised<'b>(key: &str, buffer: &'b mut [u8; 64]) -> Option<&'b str> {
    if !key.is_ascii() || key.len() > buffer.len() {
        return None;
    }
    let mut len = 0;
    for byte in key.bytes().filter(|b| *b != b'_' && *b != b'-') {
        buffer[len] = byte.to_ascii_lowercase();
        len += 1;
    }
    std::str::from_utf8(&buffer[..len]).ok()
}

/// `text` with every e-mail-shaped word replaced, or `None` when it has none.
fn scrub_emails(text: &str) -> Option<String> {
    // Most strings hold no `@`: one memchr instead of a walk over words.
    if !text.contains('@') {
        return None;
    }
    let is_email = |word: &str| {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        word.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
    };
    if !text.split_whitespace().any(is_email) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..end];
        if is_email(word) {
            // Keep surrounding punctuation: "(bob@x.io)," stays "([redacted]),".
            let core_start = word.find(char::is_alphanumeric).unwrap_or(0);
            let core_end = word.rfind(char::is_alphanumeric).map_or(word.len(), |i| i + 1);
            out.push_str(&word[..core_start]);
            out.push_str(REDACTED);
            out.push_str(&word[core_end..]);
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fast_key_match_decides_as_the_plain_one() {
        let policy = KeyRedaction::standard().key("Über-Key").exact_key("x_y");
        let plain = |key: &str| {
            let key = normalise(key);
            policy.keys.iter().any(|f| key.contains(f.as_str())) || policy.exact.contains(&key)
        };
        let long = format!("{}token", "a".repeat(70));
        let keys = [
            "",
            "name",
            "Access-Token",
            "ACCESS_TOKEN",
            "author",
            "pass",
            "Pass_",
            "p-a-s-s",
            "passes",
            "xY",
            "x-y-",
            "ÜBERKEY",
            "über_key_2",
            "to\u{212a}en",
            "tok\u{212a}",
            "pin",
            "spinner",
            "e-mail",
            "Email",
            long.as_str(),
            &long[..64],
            "_-_-",
            "c_v_v",
            "cvc2",
        ];
        for key in keys {
            assert_eq!(policy.sensitive_key(key), plain(key), "{key:?}");
        }
        // Kelvin sign lowercases to an ASCII `k`: only the full path sees it.
        assert!(policy.sensitive_key("to\u{212a}en"));
        assert!(policy.sensitive_key(&long) && !policy.sensitive_key("spinner"));
        let empty = KeyRedaction::new("p", "1");
        assert!(!empty.sensitive_key("token"), "a policy without fragments redacts no key");
    }

    #[test]
    fn keys_match_any_case_and_separator_and_nest() {
        let policy = KeyRedaction::standard();
        let mut value = json!({
            "Access-Token": "a", "user": {"PASSWORD": "b", "name": "c"}, "items": [{"client_secret": "d"}],
        });
        policy.walk(&mut value);
        assert_eq!(
            value,
            json!({
                "Access-Token": REDACTED, "user": {"PASSWORD": REDACTED, "name": "c"}, "items": [{"client_secret": REDACTED}],
            })
        );
    }

    #[test]
    fn short_keys_match_whole_and_addresses_as_keys_are_renamed() {
        let policy = KeyRedaction::standard();
        let mut value =
            json!({"auth": {"pass": "x", "author": "y"}, "cc": {"carol@example.com": "1", "bob@x.io": "2"}});
        policy.walk(&mut value);
        assert_eq!(value["auth"], json!(REDACTED));
        let cc = value["cc"].as_object().unwrap();
        assert!(cc.keys().all(|k| k.starts_with(REDACTED)) && cc.len() == 2, "{cc:?}");
        let mut value = json!({"author": "y", "spinner": 1});
        policy.walk(&mut value);
        assert_eq!(value, json!({"author": "y", "spinner": 1}));
    }

    #[test]
    fn emails_are_scrubbed_inside_text_and_other_words_survive() {
        assert_eq!(scrub_emails("mail (bob@x.io), now"), Some("mail ([redacted]), now".to_owned()));
        assert_eq!(scrub_emails("a @ b and x@y"), None);
        assert_eq!(scrub_emails("no address here"), None);
    }

    #[test]
    fn deep_payloads_redact_and_drop_without_recursion() {
        let policy = KeyRedaction::standard();
        let nest = |mut value: Value| {
            for _ in 0..100_000 {
                value = Value::Array(vec![value]);
            }
            value
        };
        // Built by hand: `json!` serializes interpolated values, recursively.
        let mut leaf = json!({ "contact": "bob@x.io" });
        leaf["token"] = nest(json!(1));
        let mut value = nest(leaf);
        policy.walk(&mut value);
        let mut inner = &value;
        while let Value::Array(items) = inner {
            inner = &items[0];
        }
        assert_eq!(inner, &json!({ "token": REDACTED, "contact": REDACTED }));
        discard(value);
    }

    #[test]
    fn pointers_reach_values_the_key_rules_miss() {
        let policy = KeyRedaction::new("custom", "2").pointer("/a/0/b");
        let mut payload = Some(json!({"a": [{"b": "x", "c": "y"}]}));
        policy.payload(&mut payload);
        assert_eq!(payload, Some(json!({"a": [{"b": REDACTED, "c": "y"}]})));
    }
}
