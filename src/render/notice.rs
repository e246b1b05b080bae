//! What a host that backs up data and that no Prometheus watches tells the system's
//! Slack-compatible receivers itself (`Host::backup_notify`, set by `eval::backup_notice`): the
//! receivers, and the sh function
//! that posts a message file to one. Used by the backup's failure notice and the container
//! watchdog; the message files are serialised JSON (the payload Slack's and Mattermost's incoming
//! webhooks take: `text` and `channel`).

use crate::model::{Host, ReceiverKind, System};

/// A receiver a host posts to: its name, the secret holding its webhook URL, its channel.
pub struct Receiver<'a> {
    pub name: &'a str,
    pub secret: &'a str,
    pub channel: Option<&'a str>,
}

/// The Slack-compatible receivers `host` tells itself; empty where Prometheus watches it.
pub fn receivers<'a>(sys: &'a System, host: &Host) -> Vec<Receiver<'a>> {
    sys.receivers
        .iter()
        .filter(|r| host.backup_notify.contains(&r.name))
        .filter_map(|r| match &r.kind {
            ReceiverKind::Slack { secret, channel } => Some(Receiver { name: &r.name, secret, channel: channel.as_deref() }),
            _ => None,
        })
        .collect()
}

/// The message a receiver gets: `text`, and its channel when it names one.
pub fn message(text: &str, r: &Receiver<'_>) -> String {
    let mut body = serde_json::json!({ "text": text });
    if let Some(c) = r.channel {
        body["channel"] = c.into();
    }
    format!("{body}\n")
}

/// Where the delivered secret holding a receiver's webhook URL is on the host.
pub fn secret_path(r: &Receiver<'_>) -> String {
    format!("{}/{}", super::SECRETS_DIR, r.secret)
}

/// `post MESSAGE_FILE URL_FILE`: posts the message to the URL the file holds (curl, which the
/// provisioner installs with the backup). The URL is checked and handed to curl in a config file
/// on its standard input, never on a command line (where other users of the host would see it).
pub const POST: &str = r#"# post MESSAGE_FILE URL_FILE
post() {
	url=$(cat "$2") || return 1
	case $url in https://* | http://*) ;; *) echo "kiln: $2 holds no URL" >&2; return 1 ;; esac
	case $url in *[\"\\]* | *[[:space:]]*) echo "kiln: $2 holds a URL curl's config cannot quote" >&2; return 1 ;; esac
	printf 'url = "%s"\n' "$url" | curl -fsS --max-time 30 --retry 3 -K - -H 'Content-Type: application/json' --data-binary "@$1" -o /dev/null
}
"#;
