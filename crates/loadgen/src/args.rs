//! The command line of `ordermesh load`, and the journey mix.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub const DEFAULT_MIX: &str = "browse=30,search=15,view=20,signin=2,order=20,purchases=8,admin=5";

/// The long help of `ordermesh load` (for the subcommand's `long_about`).
pub const LONG_ABOUT: &str = "\
Drive a running ordermesh (any base URL) with a weighted mix of shopper journeys, print a live
progress line, summarise per journey and per endpoint, write a JSON and a self-contained HTML
report, and reconcile what the platform was told with what it holds.

SETUP. As the administrator (--admin-user/--admin-password, alice/alice123 by default) it
creates --products dedicated products (category \"Loadgen\") with --product-stock units each, so
that no other traffic can disturb the stock check, and registers --shoppers shopper accounts
(<prefix>0001, …; existing ones are signed in and reused).

JOURNEYS (--mix NAME=WEIGHT,…):
  browse     GET /api/categories, GET /api/products with a category, sort, page size, sometimes
             a price range and in_stock, sometimes the next page
  search     GET /api/products?q=<a word of a product name>, then the first hit
  view       GET /api/products/{id or sku}
  signin     POST /api/users/login as a shopper (Argon2 on the server: expensive by design)
  order      POST /api/orders with an Idempotency-Key: 1-3 dedicated products, 1-3 each, at the
             expected price; --replay-ratio of them are sent again with the same key and must
             return the same order (201, idempotent-replayed)
  purchases  GET /api/orders (own), sometimes GET /api/orders/{id}
  admin      GET /api/orders?status=pending as the administrator, then one order of this run
             PUT …/status confirmed, then shipped, or (--cancel-ratio) POST …/cancel

LOAD. Closed loop by default: --concurrency virtual users, each starting its next journey as
soon as the last ended. With --rate it is open loop: journeys start at that rate whatever the
answer times (--rate-unit requests converts a request rate with the mix's mean requests per
journey), at most --max-in-flight at once; arrivals beyond that are dropped and counted. It runs
for --duration or --count measured journeys (whichever first) after a --warmup whose traffic is
left out of every statistic (it is still reconciled).

OUTPUT. Once a second on stderr: rate, journeys/s, orders/s, errors, 429s, p50/p99. At the end:
per journey and per endpoint count, errors by status, 429s (counted apart from errors),
p50/p90/p99/max latency and throughput; the same in --json and --html (latency over time and
throughput charts as inline SVG, no scripts, no CDN).

RECONCILIATION. Order requests whose outcome was unknown (timeout, 5xx) are resent with their
Idempotency-Key to learn it. Then: every order answered 201 exists exactly once (administrator
GET /api/orders/{id}, items and status as last answered) and each shopper's order count grew by
exactly the orders it was told about (so two loads at once need different --shopper-prefix);
after a settling wait (--settle-timeout) the dedicated
products' stock_on_hand moved by exactly the ordered minus cancelled quantities with nothing left
reserved, and the catalog consumed order.created for every order and order.cancelled for every
cancelled one (GET /api/events/processed). Any difference is a failure: the exit code is
non-zero.

RATE LIMITS. The gateway's defaults (RATE_LIMIT 1200/min per address, USER_RATE_LIMIT 1200/min
per user, AUTH_RATE_LIMIT 30/min per address for sign-ins) are meant for real clients; all of
this tool's traffic comes from one address and a few users. Start the platform with them raised,
or the 429 column fills up:

  RATE_LIMIT=10000000 RATE_LIMIT_BURST=1000000 USER_RATE_LIMIT=10000000 \\
  USER_RATE_LIMIT_BURST=1000000 AUTH_RATE_LIMIT=100000 AUTH_RATE_LIMIT_BURST=10000 ordermesh up";

/// Examples, shown after the options in `ordermesh load --help`.
pub const EXAMPLES: &str = "\
Examples:
  # 30 s closed loop at 16 virtual users against ordermesh up on localhost
  ordermesh load

  # open loop at 500 journeys/s for 2 minutes, after a 10 s warm-up
  ordermesh load --rate 500 --duration 2m --warmup 10s

  # orders only, as fast as 64 users can go, 20 000 of them
  ordermesh load --mix order=1 --concurrency 64 --count 20000

  # another host, 1000 requests/s, reports elsewhere
  ordermesh load --url http://127.0.0.1:9080 --rate 1000 --rate-unit requests \\
      --json out/run.json --html out/run.html";

/// Drive a running ordermesh with realistic shopper journeys, report, and reconcile.
#[derive(clap::Args, Debug, Clone)]
#[command(long_about = LONG_ABOUT, after_long_help = EXAMPLES, next_help_heading = "Load options")]
pub struct Args {
    /// Base URL of the ordermesh gateway to drive.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Open loop: start this many journeys (or requests, see --rate-unit) per second, whatever
    /// the answer times. Without it the load is closed loop (--concurrency).
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,

    /// What --rate counts.
    #[arg(long, value_enum, default_value_t = RateUnit::Journeys)]
    pub rate_unit: RateUnit,

    /// Open loop: at most this many journeys in flight; arrivals beyond are dropped and counted
    /// (a sign the target rate is more than the platform sustains).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_in_flight: usize,

    /// Closed loop: this many virtual users, each starting its next journey when the last ends.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 16)]
    pub concurrency: usize,

    /// How long to measure after the warm-up (500ms, 30s, 2m, 1h; a bare number is seconds).
    /// Default 30s, or unlimited when --count is given.
    #[arg(long, short = 'd', value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many measured journeys (with --duration: whichever comes first).
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,

    /// Load before measuring, left out of every statistic (still reconciled).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// The journey mix, NAME=WEIGHT,… of browse, search, view, signin, order, purchases, admin
    /// (names left out get weight 0).
    #[arg(long, value_name = "MIX", default_value = DEFAULT_MIX, value_parser = parse_mix)]
    pub mix: Mix,

    /// Shopper accounts to register (or reuse) and spread the journeys over.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub shoppers: usize,

    /// Shopper usernames are this prefix and a number (0001, 0002, …).
    #[arg(long, value_name = "PREFIX", default_value = "loadgen-shopper-")]
    pub shopper_prefix: String,

    /// The shoppers' password (when reusing accounts, the one they were registered with).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "LOAD_SHOPPER_PASSWORD",
        hide_env_values = true,
        default_value = "loadgen-Shopper-Pw-7"
    )]
    pub shopper_password: String,

    /// An administrator: creates the dedicated products, changes order statuses, reconciles.
    #[arg(long, value_name = "USERNAME", default_value = "alice")]
    pub admin_user: String,

    /// The administrator's password.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "LOAD_ADMIN_PASSWORD",
        hide_env_values = true,
        default_value = "alice123"
    )]
    pub admin_password: String,

    /// Dedicated products to create for the orders of this run.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub products: usize,

    /// Units on hand of each dedicated product (large, so orders never run out).
    #[arg(long, value_name = "UNITS", default_value_t = 100_000_000)]
    pub product_stock: i64,

    /// Share of orders sent a second time with the same Idempotency-Key (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.05)]
    pub replay_ratio: f64,

    /// Share of the administrator's orders cancelled rather than shipped (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = 0.3)]
    pub cancel_ratio: f64,

    /// Per-request timeout.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// How long reconciliation waits for events to be consumed and stock to settle.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub settle_timeout: Duration,

    /// Where to write the JSON report.
    #[arg(long, value_name = "FILE", default_value = "load-report.json")]
    pub json: PathBuf,

    /// Where to write the HTML report.
    #[arg(long, value_name = "FILE", default_value = "load-report.html")]
    pub html: PathBuf,

    /// Write no report files (the summary is still printed).
    #[arg(long)]
    pub no_report: bool,

    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,

    /// Leave the dedicated products on sale afterwards (by default they are deactivated).
    #[arg(long)]
    pub keep_products: bool,

    /// Seed of the random choices, for a repeatable sequence of journeys.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateUnit {
    /// Journeys started per second.
    Journeys,
    /// Requests per second, converted with the mix's mean requests per journey.
    Requests,
}

impl Args {
    /// Parses the arguments alone (as `ordermesh load` would, without the program's global
    /// options): for tests and embedding. The first item is the program name.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: Args,
        }
        <Wrapper as clap::Parser>::try_parse_from(args).map(|w| w.args)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let url = url::Url::parse(&self.url).map_err(|e| anyhow::anyhow!("--url {}: {e}", self.url))?;
        anyhow::ensure!(matches!(url.scheme(), "http" | "https"), "--url must be http:// or https://");
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be above 0");
        }
        anyhow::ensure!(self.max_in_flight > 0, "--max-in-flight must be at least 1");
        anyhow::ensure!(self.concurrency > 0, "--concurrency must be at least 1");
        anyhow::ensure!(self.count != Some(0), "--count must be at least 1");
        anyhow::ensure!(self.duration.is_none_or(|d| !d.is_zero()), "--duration must be above 0");
        anyhow::ensure!(self.shoppers > 0 || self.mix.only_anonymous(), "--shoppers must be at least 1 for this mix");
        anyhow::ensure!((1..=100).contains(&self.products), "--products must be 1 to 100");
        anyhow::ensure!((1..=1_000_000_000).contains(&self.product_stock), "--product-stock must be 1 to 1000000000");
        anyhow::ensure!((0.0..=1.0).contains(&self.replay_ratio), "--replay-ratio must be between 0 and 1");
        anyhow::ensure!((0.0..=1.0).contains(&self.cancel_ratio), "--cancel-ratio must be between 0 and 1");
        let prefix_ok = !self.shopper_prefix.is_empty()
            && self.shopper_prefix.len() <= 28
            && self.shopper_prefix.as_bytes()[0].is_ascii_alphanumeric()
            && self.shopper_prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        anyhow::ensure!(
            prefix_ok,
            "--shopper-prefix must be 1 to 28 of a-z 0-9 _ . -, starting with a letter or digit"
        );
        anyhow::ensure!(self.shoppers <= 9999, "--shoppers must be at most 9999");
        Ok(())
    }

    /// The measuring time limit: --duration, else 30 s unless a --count bounds the run.
    pub fn measure_for(&self) -> Option<Duration> {
        match (self.duration, self.count) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(30)),
        }
    }
}

/// `500ms`, `30s`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{raw:?} is not a duration such as 500ms, 30s or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {raw:?} (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds > 7.0 * 24.0 * 3600.0 {
        return Err(format!("{raw:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The kinds of shopper (and administrator) journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Journey {
    Browse,
    Search,
    View,
    Signin,
    Order,
    Purchases,
    Admin,
}

impl Journey {
    pub const ALL: [Journey; 7] = [
        Journey::Browse,
        Journey::Search,
        Journey::View,
        Journey::Signin,
        Journey::Order,
        Journey::Purchases,
        Journey::Admin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Journey::Browse => "browse",
            Journey::Search => "search",
            Journey::View => "view",
            Journey::Signin => "signin",
            Journey::Order => "order",
            Journey::Purchases => "purchases",
            Journey::Admin => "admin",
        }
    }

    /// The mean number of requests one journey makes (for --rate-unit requests).
    pub fn mean_requests(self, replay_ratio: f64) -> f64 {
        match self {
            Journey::Browse => 2.5,
            Journey::Search => 1.9,
            Journey::View | Journey::Signin => 1.0,
            Journey::Order => 1.0 + replay_ratio,
            Journey::Purchases => 1.5,
            Journey::Admin => 3.0,
        }
    }

    fn needs_a_shopper(self) -> bool {
        matches!(self, Journey::Signin | Journey::Order | Journey::Purchases)
    }
}

/// Journeys with their weights (only the positive ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix(pub Vec<(Journey, u32)>);

impl Mix {
    pub fn weight(&self, journey: Journey) -> u32 {
        self.0.iter().find(|(j, _)| *j == journey).map(|(_, w)| *w).unwrap_or(0)
    }

    pub fn mean_requests(&self, replay_ratio: f64) -> f64 {
        let total: f64 = self.0.iter().map(|(_, w)| *w as f64).sum();
        self.0.iter().map(|(j, w)| j.mean_requests(replay_ratio) * *w as f64).sum::<f64>() / total.max(1.0)
    }

    fn only_anonymous(&self) -> bool {
        !self.0.iter().any(|(j, _)| j.needs_a_shopper())
    }

    pub fn describe(&self) -> String {
        self.0.iter().map(|(j, w)| format!("{}={w}", j.name())).collect::<Vec<_>>().join(",")
    }
}

pub fn parse_mix(raw: &str) -> Result<Mix, String> {
    let mut mix: Vec<(Journey, u32)> = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected NAME=WEIGHT"))?;
        let journey = Journey::ALL.into_iter().find(|j| j.name() == name.trim()).ok_or_else(|| {
            let names: Vec<&str> = Journey::ALL.iter().map(|j| j.name()).collect();
            format!("unknown journey {name:?}; the journeys are {}", names.join(", "))
        })?;
        let weight: u32 = weight.trim().parse().map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
        if mix.iter().any(|(j, _)| *j == journey) {
            return Err(format!("{name} is given twice"));
        }
        if weight > 0 {
            mix.push((journey, weight));
        }
    }
    if mix.is_empty() {
        return Err("the mix needs at least one journey with a positive weight".into());
    }
    Ok(Mix(mix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration(" 1h ").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "10 parsecs", "-1s", "1e9h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mixes() {
        let mix = parse_mix("order=3, browse=1,admin=0").unwrap();
        assert_eq!(mix.0, vec![(Journey::Order, 3), (Journey::Browse, 1)]);
        assert_eq!(mix.weight(Journey::Admin), 0);
        assert_eq!(mix.describe(), "order=3,browse=1");
        assert!((mix.mean_requests(0.0) - (3.0 + 2.5) / 4.0).abs() < 1e-9);
        assert!(parse_mix("order=1,order=2").is_err());
        assert!(parse_mix("checkout=1").unwrap_err().contains("browse"));
        assert!(parse_mix("order=0").is_err());
        assert!(parse_mix("order").is_err());
        assert!(parse_mix(DEFAULT_MIX).is_ok());
    }

    #[test]
    fn defaults_and_validation() {
        let a = Args::try_parse_from(["load"]).unwrap();
        assert_eq!(a.url, "http://127.0.0.1:8080");
        assert_eq!(a.concurrency, 16);
        assert_eq!(a.measure_for(), Some(Duration::from_secs(30)));
        assert_eq!(a.warmup, Duration::from_secs(3));
        a.validate().unwrap();
        let a = Args::try_parse_from(["load", "-n", "100"]).unwrap();
        assert_eq!(a.measure_for(), None);
        let a = Args::try_parse_from(["load", "--rate", "250", "--rate-unit", "requests", "-d", "1m"]).unwrap();
        assert_eq!(a.rate, Some(250.0));
        assert_eq!(a.rate_unit, RateUnit::Requests);
        assert_eq!(a.measure_for(), Some(Duration::from_secs(60)));
        for bad in [
            vec!["load", "--rate", "0"],
            vec!["load", "--replay-ratio", "2"],
            vec!["load", "--shopper-prefix", "Has Space"],
            vec!["load", "--url", "ftp://x"],
            vec!["load", "--products", "0"],
        ] {
            let parsed = Args::try_parse_from(bad.clone()).unwrap();
            assert!(parsed.validate().is_err(), "{bad:?}");
        }
        assert!(Args::try_parse_from(["load", "--mix", "nope=1"]).is_err());
    }
}
