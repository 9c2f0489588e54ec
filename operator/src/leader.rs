//! Leader election with a coordination.k8s.io Lease: only the leader reconciles and writes.
//!
//! A Lease held by another replica is judged by when this process saw it change, never by
//! comparing the renew time written in it with the local clock (as client-go does): a
//! replica with a skewed clock can neither steal a live Lease nor keep a dead one. Every
//! API call on this path has a timeout, so a hung request cannot keep a leader that can no
//! longer renew.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

/// One candidate for the Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    /// Longest one API call may take.
    call_timeout: Duration,
    /// The last record seen (holder, renew time, transitions) and when it was first seen.
    observed: Mutex<Option<(String, Instant)>>,
}

/// Why a try failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("the API server did not answer within {0:?}")]
    Timeout(Duration),
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        let duration = duration.max(Duration::from_secs(1));
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            call_timeout: (duration / 3).max(Duration::from_secs(1)),
            observed: Mutex::new(None),
        }
    }

    async fn call<T>(&self, f: impl Future<Output = kube::Result<T>>) -> Result<T, LeaseError> {
        tokio::time::timeout(self.call_timeout, f)
            .await
            .map_err(|_| LeaseError::Timeout(self.call_timeout))?
            .map_err(LeaseError::Kube)
    }

    /// Whether another holder's record has stood unchanged for a lease duration, as seen by
    /// this process's monotonic clock.
    fn expired(&self, spec: &LeaseSpec) -> bool {
        let record = format!(
            "{:?}/{:?}/{:?}",
            spec.holder_identity,
            spec.renew_time.as_ref().map(|t| t.0.to_string()),
            spec.lease_transitions
        );
        let duration = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.duration);
        let mut observed = self.observed.lock().expect("lock");
        match observed.as_ref() {
            Some((seen, since)) if *seen == record => since.elapsed() >= duration,
            _ => {
                *observed = Some((record, Instant::now()));
                false
            }
        }
    }

    /// Takes or renews the Lease when it is free, expired or already ours. Returns whether
    /// this candidate leads now. Concurrent candidates race on resourceVersion: one wins.
    pub async fn try_lead(&self) -> Result<bool, LeaseError> {
        let now = MicroTime(Timestamp::now());
        let Some(mut lease) = self.call(self.api.get_opt(&self.name)).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.call(self.api.create(&PostParams::default(), &lease)).await {
                Ok(_) => Ok(true),
                Err(LeaseError::Kube(kube::Error::Api(e))) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.as_deref().unwrap_or_default();
        let ours = holder == self.identity;
        let free = holder.is_empty();
        if !ours && !free && !self.expired(spec) {
            return Ok(false);
        }
        if !ours {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
        spec.renew_time = Some(now);
        match self
            .call(self.api.replace(&self.name, &PostParams::default(), &lease))
            .await
        {
            Ok(_) => Ok(true),
            Err(LeaseError::Kube(kube::Error::Api(e))) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renews every `renew` while leading; returns when leadership is lost: another holder
    /// took the Lease, or no renewal succeeded for a lease duration (the API server is
    /// unreachable or hangs), so a standby may already lead.
    pub async fn keep_leading(&self, renew: Duration) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(renew).await;
            match self.try_lead().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => return,
                Err(e) if last_ok.elapsed() + renew < self.duration => {
                    tracing::warn!(error = %e, "renewing leadership")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew leadership within the lease");
                    return;
                }
            }
        }
    }

    /// Gives the Lease up at shutdown (no holder) so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.call(self.api.get_opt(&self.name)).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.identity.as_str())
        {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            let _ = self
                .call(self.api.replace(&self.name, &PostParams::default(), &lease))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    use super::*;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn elector() -> (Elector, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "palisade-system");
        (
            Elector::new(
                client,
                "palisade-system",
                "palisade-operator",
                "me",
                Duration::from_secs(15),
            ),
            handle,
        )
    }

    fn lease(holder: &str, renew: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "palisade-operator", "namespace": "palisade-system", "resourceVersion": "1"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew, "leaseTransitions": 0}})
    }

    /// Answers the next request with `reply`; returns its method and body.
    async fn answer(handle: &mut Handle, reply: Value) -> (String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let method = request.method().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
        (method, body)
    }

    /// One `try_lead` against the replies given, in order; returns its result and the
    /// requests' methods and bodies. Time moves only between steps.
    async fn step(e: &Elector, handle: &mut Handle, replies: Vec<Value>) -> (bool, Vec<(String, Value)>) {
        let answers = async {
            let mut seen = vec![];
            for reply in replies {
                seen.push(answer(handle, reply).await);
            }
            seen
        };
        let (result, seen) = tokio::join!(e.try_lead(), answers);
        (result.unwrap(), seen)
    }

    /// The other replica's clock is an hour behind: its renewals carry old times, yet as
    /// long as they keep coming its Lease is not taken. When they stop, it is taken after
    /// one lease duration of this process's own clock, whatever time the Lease says.
    #[tokio::test(start_paused = true)]
    async fn a_skewed_clock_neither_steals_nor_keeps_the_lease() {
        let (e, mut handle) = elector();
        let renewals = [
            "2026-11-22T09:00:00.000000Z",
            "2026-11-22T09:00:05.000000Z",
            "2026-11-22T09:00:10.000000Z",
        ];
        for renew in renewals {
            let (led, seen) = step(&e, &mut handle, vec![lease("other", renew)]).await;
            assert!(!led, "a renewing holder keeps the Lease");
            assert_eq!(seen.len(), 1, "a live holder's Lease is only read");
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // Unchanged for 10 s, then 14 s: still within the 15 s lease.
        tokio::time::advance(Duration::from_secs(4)).await;
        let (led, _) = step(&e, &mut handle, vec![lease("other", renewals[2])]).await;
        assert!(!led);
        // Unchanged for 16 s: expired by this process's clock.
        tokio::time::advance(Duration::from_secs(2)).await;
        let (led, seen) = step(
            &e,
            &mut handle,
            vec![lease("other", renewals[2]), lease("me", "2026-11-22T10:00:30.000000Z")],
        )
        .await;
        assert!(led);
        assert_eq!(seen[1].0, "PUT");
        assert_eq!(seen[1].1["spec"]["holderIdentity"], "me");
        assert_eq!(seen[1].1["spec"]["leaseTransitions"], 1);
    }

    /// A holder whose clock is ahead writes renew times in the future; when it stops
    /// renewing, the Lease is still taken after one lease duration.
    #[tokio::test(start_paused = true)]
    async fn a_future_renew_time_does_not_keep_a_dead_holder() {
        let (e, mut handle) = elector();
        let future = "2099-01-01T00:00:00.000000Z";
        let (led, _) = step(&e, &mut handle, vec![lease("other", future)]).await;
        assert!(!led);
        tokio::time::advance(Duration::from_secs(16)).await;
        let (led, seen) = step(&e, &mut handle, vec![lease("other", future), lease("me", future)]).await;
        assert!(led);
        assert_eq!(seen[1].0, "PUT");
    }

    /// A renewal the API server never answers times out, and leadership ends within the
    /// lease duration instead of hanging on.
    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_ends_leadership_within_the_lease() {
        let (elector, mut handle) = elector();
        let started = Instant::now();
        let hang = async move {
            // Take every request and never answer.
            let mut held = vec![];
            while let Some(request) = handle.next_request().await {
                held.push(request);
            }
        };
        tokio::select! {
            _ = elector.keep_leading(Duration::from_secs(5)) => {}
            _ = hang => panic!("the mock ended"),
        }
        assert!(
            started.elapsed() <= Duration::from_secs(15),
            "gave up after {:?}, beyond the 15 s lease",
            started.elapsed()
        );
    }
}
