//! Opening sessions: TCP connect, login, full-feature phase; discovery.

use crate::config::SessionConfig;
use crate::discovery::DiscoveredTarget;
use crate::error::{InitiatorError, Result};
use crate::session::{LoginOutcome, Session};
use bytes::BytesMut;
use oxcopy_iscsi::frame::{decode_frame, encode_frame, FrameLimits, Pdu};
use oxcopy_iscsi::login::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

impl Session {
    /// Connect to `addr`, log in as `cfg` says (normal session when
    /// `cfg.target_name` is set, discovery otherwise), and start the
    /// full-feature phase.
    pub async fn connect(addr: SocketAddr, cfg: SessionConfig) -> Result<Session> {
        let stream = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| InitiatorError::Timeout("TCP connect"))??;
        stream.set_nodelay(true)?;
        let mut stream = stream;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut wire = (0u64, 0u64, 0u64, 0u64);
        let login = tokio::time::timeout(cfg.login_timeout, login(&mut stream, &mut buf, &cfg, &mut wire))
            .await
            .map_err(|_| InitiatorError::Timeout("login"))??;
        // Owned halves: no lock between the reader and writer tasks.
        let (r, w) = stream.into_split();
        let s = Session::start(r, w, buf, login, cfg);
        s.add_login_stats(wire);
        Ok(s)
    }

    /// Log in over an already connected byte stream (TCP or anything else)
    /// and start the full-feature phase. Bounded by `cfg.login_timeout`.
    pub async fn login_over<S>(mut stream: S, cfg: SessionConfig) -> Result<Session>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut wire = (0u64, 0u64, 0u64, 0u64);
        let login = tokio::time::timeout(cfg.login_timeout, login(&mut stream, &mut buf, &cfg, &mut wire))
            .await
            .map_err(|_| InitiatorError::Timeout("login"))??;
        let (r, w) = tokio::io::split(stream);
        let s = Session::start(r, w, buf, login, cfg);
        s.add_login_stats(wire);
        Ok(s)
    }

    /// Open a discovery session to `addr`, run `SendTargets=All`, log out.
    pub async fn discover(addr: SocketAddr, cfg: SessionConfig) -> Result<Vec<DiscoveredTarget>> {
        let cfg = SessionConfig { target_name: None, keepalive_interval: None, ..cfg };
        let s = Session::connect(addr, cfg).await?;
        let targets = s.send_targets().await;
        let out = s.logout().await;
        let targets = targets?;
        out?;
        Ok(targets)
    }
}

/// Drive [`InitiatorLogin`] over the stream (no digests during login).
/// `wire` accumulates (bytes sent, bytes received, PDUs sent, PDUs received).
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    cfg: &SessionConfig,
    wire: &mut (u64, u64, u64, u64),
) -> Result<LoginOutcome> {
    let mut lg = InitiatorLogin::new(InitiatorLoginConfig {
        initiator_name: cfg.initiator_name.clone(),
        initiator_alias: cfg.initiator_alias.clone(),
        isid: cfg.isid_or_random(),
        target_name: cfg.target_name.clone(),
        header_digest: cfg.header_digest,
        data_digest: cfg.data_digest,
        max_recv_data_segment_length: cfg.max_recv_data_segment_length,
        max_burst_length: cfg.max_burst_length,
        first_burst_length: cfg.first_burst_length,
        initial_r2t: cfg.initial_r2t,
        immediate_data: cfg.immediate_data,
        max_outstanding_r2t: cfg.max_outstanding_r2t,
        initial_cmd_sn: cfg.initial_cmd_sn,
    });
    let chap = cfg.chap.clone().map(|c| crate::chap::ChapAuthenticator::install(&mut lg, c));
    let mut req = lg.start();
    loop {
        let enc = encode_frame(&req.header, &req.ahs, req.data.clone(), false, false);
        stream.write_all(&enc.head).await?;
        stream.write_all(&enc.data).await?;
        stream.write_all(&enc.tail).await?;
        stream.flush().await?;
        wire.0 += enc.len() as u64;
        wire.2 += 1;
        let resp = read_pdu(stream, buf, &FrameLimits::LOGIN, wire).await?;
        wire.3 += 1;
        let step = lg.on_pdu(&resp).map_err(|e| match &chap {
            Some(c) => c.explain(e),
            None => e,
        })?;
        match step {
            InitiatorStep::Send(p) => req = p,
            InitiatorStep::Complete { params, stat_sn, exp_cmd_sn, max_cmd_sn } => {
                if let Some(c) = &chap {
                    c.finish()?;
                }
                tracing::debug!(?params, "login complete");
                return Ok(LoginOutcome { params, stat_sn, exp_cmd_sn, max_cmd_sn });
            }
        }
    }
}

/// Read one whole PDU (bounded by `limits`).
async fn read_pdu<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limits: &FrameLimits,
    wire: &mut (u64, u64, u64, u64),
) -> Result<Pdu> {
    loop {
        if let Some(p) =
            decode_frame(buf, limits).map_err(|e| InitiatorError::Protocol(format!("login framing: {e}")))?
        {
            return Ok(p);
        }
        buf.reserve(16 * 1024);
        let n = stream.read_buf(buf).await?;
        if n == 0 {
            return Err(InitiatorError::ConnectionClosed);
        }
        wire.1 += n as u64;
    }
}
