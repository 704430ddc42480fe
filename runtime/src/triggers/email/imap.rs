//! The IMAP side of email triggers: the URL, the connection (TLS with
//! rustls, or STARTTLS), and the few mailbox operations a poll needs.
//!
//! Errors never quote the URL or the password: they name the host and
//! what failed.

use std::fmt;
use std::sync::Arc;

use async_imap::{Client, Session};
use futures::TryStreamExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Extra CA certificates (a PEM file) trusted for IMAP servers besides the
/// public roots: for a server with a private or self-signed certificate.
pub const CA_FILE_ENV: &str = "FLOW_IMAP_CA_FILE";

/// The keyword a message whose run was refused gets, so the next polls
/// pass it by (it stays in the mailbox for a person to look at).
pub const FAILED_KEYWORD: &str = "$FlowFailed";

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `imaps://`: TLS from the first byte (port 993).
    Implicit,
    /// `imap://`: plain, then `STARTTLS` (required) (port 143).
    StartTls,
    /// `imap://...?tls=none`: never encrypted (local test servers only).
    None,
}

/// Where and as whom to connect, from `imaps://user:password@host[:port]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's name or address.
    pub host: String,
    /// Its port (993 for `imaps://`, 143 for `imap://` by default).
    pub port: u16,
    /// TLS from the start, STARTTLS, or none.
    pub security: Security,
    /// The login name (percent-decoded).
    pub user: String,
    /// The password (percent-decoded; never logged).
    pub password: String,
}

// Hand-written so that the password never reaches a log line.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// Parses the trigger's `url:`. Errors never quote it.
    pub fn parse(text: &str) -> Result<Target, String> {
        let url = crate::core::schema::parse_url(text.trim())
            .map_err(|e| format!("the IMAP URL is not a valid URL ({e})"))?;
        let mut tls = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "tls" => tls = Some(v.into_owned()),
                other => {
                    return Err(format!(
                    "the IMAP URL has an unknown option `{other}` (the only option is `tls=none`)"
                ))
                }
            }
        }
        let (security, default_port) = match (url.scheme(), tls.as_deref()) {
            ("imaps", None) => (Security::Implicit, 993),
            ("imap", None | Some("required")) => (Security::StartTls, 143),
            ("imap", Some("none")) => (Security::None, 143),
            ("imap" | "imaps", Some(other)) => {
                return Err(format!(
                    "`tls={other}` is not an option of {}:// URLs (imap:// takes tls=none)",
                    url.scheme()
                ))
            }
            (scheme, _) => {
                return Err(format!(
                "the IMAP URL has scheme `{scheme}`; expected imaps:// (TLS) or imap:// (STARTTLS)"
            ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the IMAP URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str, what: &str| {
            crate::core::schema::percent_decode(s).ok_or_else(|| {
                format!("the {what} in the IMAP URL is not valid percent-encoded UTF-8")
            })
        };
        let user = decode(url.username(), "user name")?;
        let password = decode(url.password().unwrap_or_default(), "password")?;
        if user.is_empty() {
            return Err("the IMAP URL has no user name (imaps://user:password@host)".into());
        }
        Ok(Target {
            host,
            port: url.port().unwrap_or(default_port),
            security,
            user,
            password,
        })
    }
}

/// The byte stream under the IMAP client: plain TCP or TLS over it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Transport for T {}

type Conn = Box<dyn Transport>;

/// A logged-in session with one mailbox selected.
pub struct Mailbox {
    session: Session<Conn>,
    /// The server moves messages itself (RFC 6851); else copy, flag
    /// `\Deleted` and expunge.
    can_move: bool,
    /// `UID EXPUNGE` (RFC 4315) removes only the message moved, not every
    /// message someone else flagged `\Deleted`.
    uid_expunge: bool,
}

impl Mailbox {
    /// Connects, logs in and selects `name`.
    pub async fn open(target: &Target, name: &str) -> Result<Mailbox, String> {
        let client = connect(target).await?;
        let mut session = client
            .login(&target.user, &target.password)
            .await
            .map_err(|(e, _)| format!("login as `{}` refused: {e}", target.user))?;
        let caps = session
            .capabilities()
            .await
            .map_err(|e| format!("CAPABILITY: {e}"))?;
        let can_move = caps.has_str("MOVE");
        let uid_expunge = caps.has_str("UIDPLUS");
        session
            .select(name)
            .await
            .map_err(|e| format!("cannot open the mailbox `{name}`: {e}"))?;
        Ok(Mailbox {
            session,
            can_move,
            uid_expunge,
        })
    }

    /// Creates mailbox `name` unless it exists.
    pub async fn ensure_exists(&mut self, name: &str) -> Result<(), String> {
        let found: Vec<_> = self
            .session
            .list(Some(""), Some(name))
            .await
            .map_err(|e| format!("LIST `{name}`: {e}"))?
            .try_collect()
            .await
            .map_err(|e| format!("LIST `{name}`: {e}"))?;
        if found.is_empty() {
            self.session
                .create(name)
                .await
                .map_err(|e| format!("cannot create the mailbox `{name}`: {e}"))?;
            tracing::info!(mailbox = name, "mailbox created");
        }
        Ok(())
    }

    /// The UIDs of the messages still to handle, oldest first: not seen,
    /// not deleted, not marked failed.
    pub(crate) async fn pending(&mut self) -> Result<Vec<u32>, String> {
        self.search(&format!("UNSEEN UNDELETED NOT KEYWORD {FAILED_KEYWORD}"))
            .await
    }

    /// The raw bytes of message `uid`, without setting `\Seen` (a crash
    /// before its run is stored must leave it to the next poll); `None`
    /// if it is gone (another replica moved it meanwhile).
    pub(crate) async fn fetch(&mut self, uid: u32) -> Result<Option<Vec<u8>>, String> {
        let fetches: Vec<_> = self
            .session
            .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
            .await
            .map_err(|e| format!("FETCH: {e}"))?
            .try_collect()
            .await
            .map_err(|e| format!("FETCH: {e}"))?;
        Ok(fetches
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec))
    }

    /// Moves message `uid` into mailbox `to`.
    pub(crate) async fn move_to(&mut self, uid: u32, to: &str) -> Result<(), String> {
        let uid_set = uid.to_string();
        let err = |e: async_imap::error::Error| format!("cannot move a message to `{to}`: {e}");
        // A message already gone was moved by another replica polling the
        // same mailbox (its run stored; this replica's was a duplicate):
        // nothing left to do.
        let moved_or_copied = if self.can_move {
            self.session.uid_mv(&uid_set, to).await
        } else {
            self.session.uid_copy(&uid_set, to).await
        };
        match moved_or_copied {
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(err(e)),
            Ok(()) if self.can_move => return Ok(()),
            Ok(()) => {}
        }
        self.add_flag(uid, "\\Deleted").await?;
        if self.uid_expunge {
            drain(self.session.uid_expunge(&uid_set).await)
                .await
                .map_err(err)
        } else {
            drain(self.session.expunge().await).await.map_err(err)
        }
    }

    /// Marks message `uid` with [`FAILED_KEYWORD`], or `\Seen` on a server
    /// that refuses keywords: either way later polls pass it by, so one bad
    /// message never holds up the others.
    pub(crate) async fn mark_failed(&mut self, uid: u32) -> Result<(), String> {
        if let Err(error) = self.add_flag(uid, FAILED_KEYWORD).await {
            tracing::warn!(%error, "the server refused the keyword; flagging the rejected message \\Seen instead");
            return self.add_flag(uid, "\\Seen").await;
        }
        Ok(())
    }

    /// Adds flag or keyword `flag` to message `uid`.
    pub(crate) async fn add_flag(&mut self, uid: u32, flag: &str) -> Result<(), String> {
        let err = |e: async_imap::error::Error| format!("cannot flag a message {flag}: {e}");
        let flags = format!("+FLAGS.SILENT ({flag})");
        drain(self.session.uid_store(uid.to_string(), flags).await)
            .await
            .map_err(err)
    }

    /// Ends the session politely (errors do not matter any more).
    pub async fn close(mut self) {
        let _ = self.session.logout().await;
    }

    /// Appends a message to `mailbox` (how tests deliver mail).
    #[doc(hidden)]
    pub async fn append(&mut self, mailbox: &str, raw: &[u8]) -> Result<(), String> {
        self.session
            .append(mailbox, None, None, raw)
            .await
            .map_err(|e| format!("APPEND: {e}"))
    }

    /// The UIDs of the selected mailbox's messages matching an IMAP
    /// search, ascending (how tests look at what the trigger did).
    #[doc(hidden)]
    pub async fn search(&mut self, query: &str) -> Result<Vec<u32>, String> {
        let mut uids: Vec<u32> = self
            .session
            .uid_search(query)
            .await
            .map_err(|e| format!("SEARCH: {e}"))?
            .into_iter()
            .collect();
        // UIDs grow with arrival: the order messages came in.
        uids.sort_unstable();
        Ok(uids)
    }
}

/// Opens the connection and reads the greeting; for `imap://`, upgrades
/// it with STARTTLS.
async fn connect(target: &Target) -> Result<Client<Conn>, String> {
    let addr = (target.host.as_str(), target.port);
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", target.host, target.port))?;
    let conn: Conn = match target.security {
        Security::Implicit => Box::new(tls(tcp, &target.host).await?),
        Security::None => Box::new(tcp),
        Security::StartTls => {
            let mut plain = Client::new(tcp);
            greeting(&mut plain).await?;
            plain
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| format!("STARTTLS refused by {}: {e}", target.host))?;
            // No second greeting after STARTTLS (RFC 3501 §6.2.1).
            let tls = tls(plain.into_inner(), &target.host).await?;
            return Ok(Client::new(Box::new(tls)));
        }
    };
    let mut client = Client::new(conn);
    greeting(&mut client).await?;
    Ok(client)
}

async fn greeting<T>(client: &mut Client<T>) -> Result<(), String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug,
{
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the server closed the connection before its greeting".into()),
        Err(e) => Err(format!("no IMAP greeting: {e}")),
    }
}

async fn tls(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|_| format!("`{host}` is not a valid server name for TLS"))?;
    tokio_rustls::TlsConnector::from(Arc::new(tls_config()?))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

/// The public roots, plus the certificates of [`CA_FILE_ENV`] when set.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|p| !p.is_empty()) {
        let shown = std::path::Path::new(&path).display().to_string();
        let certs = CertificateDer::pem_file_iter(&path)
            .map_err(|e| format!("{CA_FILE_ENV}={shown}: {e}"))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{CA_FILE_ENV}={shown}: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("{CA_FILE_ENV}={shown}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether a command failed only because its message is gone from the
/// mailbox (`[EXPUNGEISSUED]`, RFC 2180 §4.1).
fn is_gone(error: &async_imap::error::Error) -> bool {
    error.to_string().contains("[EXPUNGEISSUED]")
}

/// Reads a command's response stream to its end (the command is done only
/// then), keeping nothing but the first error.
async fn drain<S, T>(stream: async_imap::error::Result<S>) -> async_imap::error::Result<()>
where
    S: futures::Stream<Item = async_imap::error::Result<T>>,
{
    stream?.try_for_each(|_| async { Ok(()) }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_security_port_and_credentials() {
        let t = Target::parse("imaps://orders%40shop.example:p%3Ass@mail.example").unwrap();
        assert_eq!(t.security, Security::Implicit);
        assert_eq!((t.host.as_str(), t.port), ("mail.example", 993));
        assert_eq!(
            (t.user.as_str(), t.password.as_str()),
            ("orders@shop.example", "p:ss")
        );
        let t = Target::parse("imap://u:p@127.0.0.1:1143").unwrap();
        assert_eq!((t.security, t.port), (Security::StartTls, 1143));
        let t = Target::parse("imap://u:p@localhost?tls=none").unwrap();
        assert_eq!((t.security, t.port), (Security::None, 143));
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_them() {
        for bad in [
            "http://u:secret@host",
            "imaps://u:secret@host?tls=none",
            "imap://u:secret@host?verify=no",
            "imaps://:secret@host",
            "not a url secret",
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
        let t = Target::parse("imaps://u:secret@host").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
