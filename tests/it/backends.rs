//! Fresh stores on both backends, and a macro that instantiates one behaviour suite
//! on each. PostgreSQL tests never skip: an unreachable server fails them.

use treasury::store::Store;

/// Where the PostgreSQL tests create their databases (trust auth on the CI machine).
pub fn postgres_admin_url() -> String {
    std::env::var("TREASURY_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A store on a fresh SQLite file, and the directory that holds it.
pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create a temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    let store = Store::connect(&url).await.expect("open a SQLite store");
    (store, dir)
}

/// A store on a fresh PostgreSQL database of its own.
pub async fn postgres_store() -> (Store, String) {
    let admin = postgres_admin_url();
    let name = format!("treasury_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for the backend suite: {e}"));
    sqlx::Executor::execute(
        &mut conn,
        sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")),
    )
    .await
    .expect("create a test database");
    let mut url = url::Url::parse(&admin).expect("a PostgreSQL URL");
    url.set_path(&name);
    let store = Store::connect(url.as_str())
        .await
        .expect("open a PostgreSQL store");
    (store, url.to_string())
}

/// A store of either backend that keeps its files alive for the test's duration.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let (store, dir) = sqlite_store().await;
        let url = format!("sqlite://{}", dir.path().join("store.db").display());
        Self {
            store,
            url,
            _dir: Some(dir),
        }
    }
    pub async fn postgres() -> Self {
        let (store, url) = postgres_store().await;
        Self {
            store,
            url,
            _dir: None,
        }
    }
    /// A second, independent connection pool on the same database (another "process").
    pub async fn reopen(&self) -> Store {
        Store::connect(&self.url).await.expect("reopen the store")
    }
}

/// Instantiates each listed `async fn(TestStore)` once per backend:
/// `on_both_backends!(audit_chain_verifies, ...);` expands to `sqlite::audit_chain_verifies`
/// and `postgres::audit_chain_verifies`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::backends::TestStore::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::backends::TestStore::postgres().await).await
                }
            )*
        }
    };
}
