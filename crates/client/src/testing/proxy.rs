//! A TCP proxy in front of a test server whose open connections a test can cut at once (as a
//! network failure would), while new connections keep being accepted.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Cuts every connection open through a proxy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cutter(Arc<Mutex<Vec<AbortHandle>>>);

impl Cutter {
    /// Closes every open connection; how many there were.
    pub(crate) fn cut(&self) -> usize {
        let mut conns = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let open = conns.iter().filter(|c| !c.is_finished()).count();
        for conn in conns.drain(..) {
            conn.abort();
        }
        open
    }
}

/// Starts a proxy to `upstream`; its address and its cutter.
pub(crate) async fn start(upstream: String) -> (String, Cutter) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr").to_string();
    let cutter = Cutter::default();
    let conns = cutter.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let task = tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            conns
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(task.abort_handle());
        }
    });
    (addr, cutter)
}
