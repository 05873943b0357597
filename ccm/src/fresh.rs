//! A value loaded from the orchestrator and refreshed on demand: readers get a
//! cheap shared snapshot, and concurrent callers that need a fresher one wait
//! for a single refresh instead of each making their own calls. Changes
//! recorded while a load is in flight are replayed onto its result, so a load
//! that started before a write never erases it, and no writer ever waits for
//! a load (nor a load for a writer).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A change recorded with [`Fresh::update`].
type Change<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

struct State<T> {
    /// When the value was loaded (`None`: never, or invalidated).
    at: Option<Instant>,
    value: Arc<T>,
    /// Changes made since the running load started (`None`: no load runs).
    replay: Option<Vec<Change<T>>>,
    /// An invalidation arrived while a load ran: its result is due again at once.
    invalidated: bool,
}

/// A refreshed-on-demand value.
pub struct Fresh<T> {
    state: Mutex<State<T>>,
    /// One load at a time; callers queue here and find the value fresh.
    loading: tokio::sync::Mutex<()>,
}

impl<T: Default> Default for Fresh<T> {
    fn default() -> Self {
        let state = State { at: None, value: Arc::new(T::default()), replay: None, invalidated: false };
        Fresh { state: Mutex::new(state), loading: tokio::sync::Mutex::new(()) }
    }
}

impl<T> Fresh<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        self.lock().value.clone()
    }

    /// How old the value is; `None` if it must be loaded.
    #[cfg(test)]
    fn age(&self) -> Option<Duration> {
        self.lock().at.map(|t| t.elapsed())
    }

    /// Forces the next `ensure_fresh` to reload (after an outcome that may have
    /// changed the orchestrator without our knowing how).
    pub fn invalidate(&self) {
        let mut state = self.lock();
        state.at = None;
        if state.replay.is_some() {
            state.invalidated = true;
        }
    }

    /// Whether the value comes from a load that started at or after `since`.
    fn loaded_since(&self, since: Option<Instant>) -> bool {
        self.lock().at.is_some_and(|at| since.is_none_or(|s| at >= s))
    }

    /// Reloads with `load` unless the value is at most `max_age` old as of this
    /// call. A caller that queued behind a load which started before its call
    /// (and `max_age` ago) gets the next one: a load in flight may predate
    /// what the caller has seen, so it cannot answer for it.
    pub async fn ensure_fresh<E, F, Fut>(&self, max_age: Duration, load: F) -> Result<(), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let since = Instant::now().checked_sub(max_age);
        if self.loaded_since(since) {
            return Ok(());
        }
        let _one = self.loading.lock().await;
        if self.loaded_since(since) {
            return Ok(());
        }
        let started = Instant::now();
        {
            let mut state = self.lock();
            state.replay = Some(Vec::new());
            state.invalidated = false;
        }
        let loaded = load().await;
        let mut state = self.lock();
        let replay = state.replay.take().unwrap_or_default();
        let mut value = loaded?;
        for change in &replay {
            change(&mut value);
        }
        state.value = Arc::new(value);
        state.at = if std::mem::take(&mut state.invalidated) { None } else { Some(started) };
        Ok(())
    }
}

impl<T: Clone> Fresh<T> {
    /// Records a change the caller made (or observed) in the orchestrator.
    pub fn update(&self, change: impl Fn(&mut T) + Send + Sync + 'static) {
        let mut state = self.lock();
        change(Arc::make_mut(&mut state.value));
        if let Some(replay) = state.replay.as_mut() {
            replay.push(Arc::new(change));
        }
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
    async fn callers_that_arrive_during_a_load_share_the_next_one() {
        let fresh: Arc<Fresh<u32>> = Arc::new(Fresh::default());
        let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (release, held) = tokio::sync::oneshot::channel::<()>();
        let held = Arc::new(tokio::sync::Mutex::new(Some(held)));
        let caller = || {
            let (fresh, loads, held) = (fresh.clone(), loads.clone(), held.clone());
            tokio::spawn(async move {
                fresh
                    .ensure_fresh(Duration::ZERO, || async move {
                        if let Some(held) = held.lock().await.take() {
                            held.await.unwrap();
                        }
                        Ok::<_, ()>(loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                    })
                    .await
            })
        };
        let first = caller();
        while fresh.lock().replay.is_none() {
            tokio::task::yield_now().await;
        }
        // Both arrive while the first load runs, which may predate what they saw:
        // neither takes it, and they share one more load instead of one each.
        let others = [caller(), caller()];
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        for other in others {
            other.await.unwrap().unwrap();
        }
        assert_eq!((loads.load(std::sync::atomic::Ordering::SeqCst), *fresh.get()), (2, 2));
        // A caller content with a minute-old value takes what is there.
        fresh.ensure_fresh(Duration::from_secs(60), || async { Ok::<_, ()>(99) }).await.unwrap();
        assert_eq!(*fresh.get(), 2);
    }

    #[tokio::test]
    async fn a_failed_load_keeps_the_old_value_and_stays_due() {
        let fresh: Fresh<u32> = Fresh::default();
        fresh.update(|v| *v = 3);
        assert_eq!(fresh.ensure_fresh(Duration::from_secs(60), || async { Err::<u32, _>("down") }).await, Err("down"));
        assert_eq!((*fresh.get(), fresh.age()), (3, None));
    }

    #[tokio::test]
    async fn changes_made_during_a_load_survive_it_and_nobody_waits() {
        let fresh: Arc<Fresh<Vec<u32>>> = Arc::new(Fresh::default());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        let loader = {
            let fresh = fresh.clone();
            tokio::spawn(async move {
                fresh
                    .ensure_fresh(Duration::ZERO, || async move {
                        let _ = started_tx.send(());
                        let _ = finish_rx.await;
                        // Listed before the write below landed: it lacks 9.
                        Ok::<_, ()>(vec![1, 2])
                    })
                    .await
            })
        };
        started_rx.await.unwrap();
        // A write lands while the (stale) list is in flight; the writer does not wait.
        fresh.update(|v| v.push(9));
        assert_eq!(*fresh.get(), vec![9]);
        finish_tx.send(()).unwrap();
        loader.await.unwrap().unwrap();
        assert_eq!(*fresh.get(), vec![1, 2, 9], "the write made during the load is replayed onto its result");
        assert!(fresh.age().is_some());
    }

    #[tokio::test]
    async fn an_invalidation_during_a_load_keeps_the_value_due() {
        let fresh: Arc<Fresh<u32>> = Arc::new(Fresh::default());
        let f = fresh.clone();
        fresh
            .ensure_fresh(Duration::ZERO, || async move {
                f.invalidate();
                Ok::<_, ()>(5)
            })
            .await
            .unwrap();
        assert_eq!((*fresh.get(), fresh.age()), (5, None));
    }
}
