//! A real browser for the owner pages: Debian's headless Chromium, driven through its
//! chromedriver (WebDriver) with fantoccini. Every page a test looks at can be saved as a
//! screenshot under `target/screenshots/<test>/`, the artifacts a person reviews.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use super::peers::free_port;
use super::wait_until;

pub struct Browser {
    pub client: Client,
    driver: Option<std::process::Child>,
    _profile: tempfile::TempDir,
    shots: PathBuf,
    taken: usize,
}

impl Browser {
    /// A fresh Chromium with an empty profile; screenshots go to `target/screenshots/<test>/`.
    pub async fn start(test: &str) -> Self {
        for (program, package) in [
            ("/usr/bin/chromium", "chromium"),
            ("/usr/bin/chromedriver", "chromium-driver"),
        ] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: install Debian's {package} (tests/peers/setup does, as root)"
            );
        }
        let port = free_port();
        // Its own process group, so that dropping the browser ends Chromium's processes too.
        let driver = std::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        let status = format!("http://127.0.0.1:{port}/status");
        wait_until("chromedriver", Duration::from_secs(30), || async {
            match reqwest::get(&status).await {
                Ok(r) => r
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        let profile = tempfile::tempdir().expect("profile dir");
        // This machine has no way out: without the background-networking switches Chromium
        // keeps trying Google's hosts.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1024,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session in Chromium");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("target dir")
            .join("screenshots")
            .join(test);
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            client,
            driver: Some(driver),
            _profile: profile,
            shots,
            taken: 0,
        }
    }

    /// Saves what the browser shows as `NN-name.png`.
    pub async fn screenshot(&mut self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        self.taken += 1;
        let path = self.shots.join(format!("{:02}-{name}.png", self.taken));
        std::fs::write(&path, png).expect("write screenshot");
    }

    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open a page");
    }

    /// The element `css` once it is there (pages load after a click's redirects).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await.map(String::from);
                let source = self.client.source().await.unwrap_or_default();
                panic!("no {css} on the page ({e}); at {url:?}:\n{source}")
            }
        }
    }

    /// Clicks `css` and waits until the page it was on has gone: every click here submits a
    /// form, and a page that follows with the same heading (a form shown again) must not be
    /// mistaken for the one clicked on.
    pub async fn click(&self, css: &str) {
        let page = self
            .client
            .find(Locator::Css("html"))
            .await
            .expect("the page's root");
        self.find(css).await.click().await.expect("click");
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        // A stale root element is the WebDriver's word for "this document was replaced".
        while page.tag_name().await.is_ok() {
            assert!(
                tokio::time::Instant::now() < until,
                "clicking {css} did not leave the page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear a field");
        field.send_keys(text).await.expect("type");
    }

    /// The page's visible text once it has a heading saying `heading`.
    pub async fn page_with_heading(&self, heading: &str) -> String {
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(h1) = self.client.find(Locator::Css("h1")).await
                && h1.text().await.is_ok_and(|t| t.trim() == heading)
            {
                return self.text().await;
            }
            if tokio::time::Instant::now() > until {
                let url = self.client.current_url().await.map(String::from);
                let text = self.client.source().await.unwrap_or_default();
                panic!("no page headed {heading:?}; at {url:?}:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every field has its label and the page reads without JavaScript's help; at a phone's
    /// width (390 px) nothing runs off the side. The window stays phone-sized until `desktop`.
    pub async fn assert_accessible_and_fits_a_phone(&self) {
        let unlabelled = self
            .client
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(i => !i.id || !document.querySelector(`label[for='${i.id}']`))
                   .map(i => i.name);",
                vec![],
            )
            .await
            .expect("run a check in the page");
        assert_eq!(unlabelled, serde_json::json!([]), "fields without a label");
        let lang = self
            .client
            .execute("return document.documentElement.lang;", vec![])
            .await
            .expect("lang");
        assert_eq!(lang, "en", "the page says its language");
        self.client
            .set_window_size(390, 844)
            .await
            .expect("a phone's window");
        let overflow = self
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("measure");
        assert_eq!(overflow, 0, "the page is wider than a phone");
    }

    pub async fn desktop(&self) {
        self.client
            .set_window_size(1024, 900)
            .await
            .expect("a desktop window");
    }

    pub async fn text(&self) -> String {
        let body = self.find("body").await;
        body.text().await.expect("page text")
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // SAFETY: kill(2) on the process group of our own child (not yet reaped, so its
            // id is still ours) has no memory-safety preconditions.
            unsafe { libc::kill(-(driver.id() as i32), libc::SIGKILL) };
            let _ = driver.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}
