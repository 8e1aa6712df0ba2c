//! The store's side of webhook deliveries, a role of its own: what the delivery worker and the
//! `webhooks` commands use, and nothing else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Lease, StoreError};
use crate::domain::EmailAddress;
use crate::events::Stored;

/// One event on its way to one endpoint, claimed under a lease.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub endpoint: String,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub event: Stored,
}

/// An endpoint's deliveries, for `credwatch webhooks status` and the metrics.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub pending: u64,
    pub oldest_pending_at: Option<DateTime<Utc>>,
    pub delivered: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Queues a delivery to `endpoint` of every event of `types` (all when empty) written since
    /// the last call; an endpoint seen for the first time starts with the events after now.
    async fn fan_out(
        &self,
        endpoint: &str,
        types: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Claims due deliveries of `endpoint`: for each order key only its oldest undelivered
    /// event, so a key's events go out in order and a slow key holds no other back.
    async fn claim_deliveries(
        &self,
        endpoint: &str,
        lease: &Lease,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
    /// Marks deliveries done, in one write (a batch's worth: each write waits for the disk).
    async fn delivered(
        &self,
        deliveries: &[Delivery],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    async fn retry_delivery(
        &self,
        delivery: &Delivery,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Gives a delivery up; the operator is told once per endpoint and failing spell.
    async fn delivery_failed(
        &self,
        delivery: &Delivery,
        error: &str,
        now: DateTime<Utc>,
        operator: Option<&EmailAddress>,
    ) -> Result<(), StoreError>;
    /// When the next delivery of `endpoint` is due, if any is pending.
    async fn next_delivery_due(&self, endpoint: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn endpoint_status(&self) -> Result<Vec<EndpointStatus>, StoreError>;
    /// Failed and waiting deliveries of `endpoint` are due again now. Returns how many.
    async fn retry_endpoint(&self, endpoint: &str, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// Every event since `since` goes to `endpoint` again, delivered before or not.
    async fn replay(
        &self,
        endpoint: &str,
        types: &[String],
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
