//! The channels: SMTP (lettre) and webhooks (ureq). Error messages never carry the password
//! or the webhook URL (which often holds a token).
use anyhow::{anyhow, Context, Result};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};

use super::config::{SmtpCfg, Tls, WebhookCfg};
use super::{Channel, Message};

pub struct Smtp {
    transport: SmtpTransport,
    from: lettre::message::Mailbox,
    to: Vec<lettre::message::Mailbox>,
    server: String,
}

impl Smtp {
    pub fn new(cfg: &SmtpCfg) -> Result<Smtp> {
        let port = cfg.port();
        let builder = match cfg.tls {
            Tls::None => SmtpTransport::builder_dangerous(&cfg.server),
            Tls::Starttls => SmtpTransport::starttls_relay(&cfg.server).context("notify.smtp.server")?,
            Tls::Tls => SmtpTransport::relay(&cfg.server).context("notify.smtp.server")?,
        };
        let mut builder = builder.port(port).timeout(Some(cfg.timeout));
        if let (Some(u), Some(p)) = (&cfg.username, cfg.password()?) {
            builder = builder.credentials(Credentials::new(u.clone(), p));
        }
        let to = cfg
            .to
            .iter()
            .enumerate()
            .map(|(i, t)| t.parse().map_err(|e| anyhow!("notify.smtp.to[{i}]: {e}")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Smtp {
            transport: builder.build(),
            from: cfg.from.parse().map_err(|e| anyhow!("notify.smtp.from: {e}"))?,
            to,
            server: format!("{}:{port}", cfg.server),
        })
    }
}

impl Channel for Smtp {
    fn name(&self) -> String {
        format!("smtp {}", self.server)
    }

    fn send(&mut self, m: &Message) -> Result<()> {
        let mut b = lettre::Message::builder().from(self.from.clone()).subject(&m.subject);
        for t in &self.to {
            b = b.to(t.clone());
        }
        let mail = b.header(ContentType::TEXT_PLAIN).body(m.text.clone())?;
        self.transport.send(&mail).map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

pub struct Webhook {
    url: String,
    name: String,
    agent: ureq::Agent,
}

impl Webhook {
    pub fn new(cfg: &WebhookCfg, index: usize) -> Webhook {
        Webhook {
            url: cfg.url.0.clone(),
            name: cfg.name.clone().unwrap_or_else(|| format!("webhook[{index}]")),
            agent: ureq::AgentBuilder::new().timeout(cfg.timeout).build(),
        }
    }
}

impl Channel for Webhook {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn send(&mut self, m: &Message) -> Result<()> {
        let body = serde_json::json!({"text": m.text, "subject": m.subject, "alerts": m.alerts});
        match self.agent.post(&self.url).set("Content-Type", "application/json").send_string(&body.to_string()) {
            Ok(_) => Ok(()),
            // ureq's own messages include the URL: report the status or the kind of failure only.
            Err(ureq::Error::Status(code, _)) => Err(anyhow!("HTTP status {code}")),
            Err(ureq::Error::Transport(t)) => {
                Err(anyhow!("{}{}", t.kind(), t.message().map(|m| format!(": {m}")).unwrap_or_default()))
            }
        }
    }
}
