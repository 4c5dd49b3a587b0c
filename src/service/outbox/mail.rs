//! Mail through SMTP (lettre): `smtp://` plain, `smtps://` TLS, credentials in the URL, as
//! lettre reads them; a 15-second limit, like webhooks.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// How a message went: delivered, or what failed and whether trying again may help.
pub enum Sent {
    Accepted,
    Refused { permanent: bool, why: String },
}

impl Mailer {
    pub fn new(url: &str, from: &str) -> anyhow::Result<Mailer> {
        use anyhow::Context;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("smtp_url")?
            .timeout(Some(std::time::Duration::from_secs(15)))
            .build();
        let from = from.parse().context("smtp_from is not a mail address")?;
        Ok(Mailer { transport, from })
    }

    pub async fn send(&self, to: &str, subject: &str, text: &str) -> Sent {
        let to: Mailbox = match to.parse() {
            Ok(to) => to,
            Err(_) => {
                return Sent::Refused {
                    permanent: true,
                    why: "the address is not a mail address".into(),
                }
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned());
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                return Sent::Refused {
                    permanent: true,
                    why: format!("the message could not be built: {e}"),
                }
            }
        };
        match self.transport.send(message).await {
            Ok(_) => Sent::Accepted,
            Err(e) => Sent::Refused {
                permanent: e.is_permanent(),
                why: format!("the mail server refused it: {e}"),
            },
        }
    }
}

/// Whether `text` reads as one mail address (checked when a person is given one).
pub fn is_address(text: &str) -> bool {
    text.len() <= 254 && text.parse::<lettre::Address>().is_ok()
}
