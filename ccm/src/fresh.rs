//! A value loaded from the orchestrator and refreshed on demand: readers get a
//! cheap shared snapshot, and concurrent callers that need a fresher one wait
//! for a single refresh instead of each making their own calls.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A refreshed-on-demand value.
pub struct Fresh<T> {
    /// The value and when it was loaded (`None`: never, or invalidated).
    value: RwLock<(Option<Instant>, Arc<T>)>,
    /// Held while refreshing (exclusively) and while changing the value and
    /// the orchestrator together (shared), so a refresh never overwrites a change
    /// it did not see.
    gate: tokio::sync::RwLock<()>,
}

impl<T: Default> Default for Fresh<T> {
    fn default() -> Self {
        Fresh { value: RwLock::new((None, Arc::new(T::default()))), gate: tokio::sync::RwLock::new(()) }
    }
}

impl<T> Fresh<T> {
    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.value.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// How old the value is; `None` if it must be loaded.
    pub fn age(&self) -> Option<Duration> {
        self.value.read().unwrap_or_else(|e| e.into_inner()).0.map(|t| t.elapsed())
    }

    /// Forces the next `ensure_fresh` to reload (after an outcome that may have
    /// changed the orchestrator without our knowing how).
    pub fn invalidate(&self) {
        self.value.write().unwrap_or_else(|e| e.into_inner()).0 = None;
    }

    /// Reloads with `load` unless a value younger than `max_age` exists.
    pub async fn ensure_fresh<E, F, Fut>(&self, max_age: Duration, load: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.age().is_some_and(|a| a <= max_age) {
            return Ok(());
        }
        let _exclusive = self.gate.write().await;
        if self.age().is_some_and(|a| a <= max_age) {
            return Ok(());
        }
        let started = Instant::now();
        let loaded = load().await?;
        // Aged from when loading started: anything changed meanwhile is newer than it.
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = (Some(started), Arc::new(loaded));
        Ok(())
    }

    /// Holds off refreshes while the caller changes the orchestrator and then
    /// records the change with `update`.
    pub async fn changing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }
}

impl<T: Clone> Fresh<T> {
    /// Records a change the caller made (or observed) in the orchestrator.
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        let mut guard = self.value.write().unwrap_or_else(|e| e.into_inner());
        change(Arc::make_mut(&mut guard.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_load_serves_concurrent_callers_until_it_ages() {
        let fresh: Arc<Fresh<u32>> = Arc::new(Fresh::default());
        let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let calls = (0..8).map(|_| {
            let (fresh, loads) = (fresh.clone(), loads.clone());
            async move {
                fresh
                    .ensure_fresh(Duration::from_secs(60), || async {
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                    })
                    .await
            }
        });
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        assert_eq!((loads.load(std::sync::atomic::Ordering::SeqCst), *fresh.get()), (1, 1));
        fresh.invalidate();
        fresh.ensure_fresh(Duration::from_secs(60), || async { Ok::<_, ()>(7) }).await.unwrap();
        assert_eq!(*fresh.get(), 7);
    }

    #[tokio::test]
    async fn a_failed_load_keeps_the_old_value_and_stays_due() {
        let fresh: Fresh<u32> = Fresh::default();
        fresh.update(|v| *v = 3);
        assert_eq!(fresh.ensure_fresh(Duration::from_secs(60), || async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!((*fresh.get(), fresh.age()), (3, None));
    }

    #[tokio::test]
    async fn a_refresh_waits_for_changes_in_flight() {
        let fresh: Arc<Fresh<Vec<u32>>> = Arc::new(Fresh::default());
        let change = fresh.changing().await;
        let refresher = {
            let fresh = fresh.clone();
            tokio::spawn(async move { fresh.ensure_fresh(Duration::ZERO, || async { Ok::<_, ()>(vec![1, 2]) }).await })
        };
        tokio::task::yield_now().await;
        assert!(!refresher.is_finished(), "the refresh must wait for the change");
        fresh.update(|v| v.push(9));
        drop(change);
        refresher.await.unwrap().unwrap();
        assert_eq!(*fresh.get(), vec![1, 2], "the load that started after the change wins");
    }
}
