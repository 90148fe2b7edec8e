//! The `--health-*` options of `crashwatch run` (the hang checks; the
//! systemd watchdog needs none: it follows `NOTIFY_SOCKET`).

use std::time::Duration;

use clap::Args;

use super::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct HangArgs {
    /// Check that the program answers: an HTTP GET of URL (http or https)
    /// every --health-interval; a 2xx or 3xx answer within --health-timeout
    /// is healthy. After --health-failures failures in a row the program is
    /// hung: crashwatch dumps its stacks (it runs on), sends a `hang` event,
    /// and with --restart on-hang (or on-failure, always) ends and restarts
    /// it. (Under systemd with WatchdogSec=, crashwatch also watches the
    /// program's WATCHDOG=1 pings, with no option: see the README, Hangs)
    #[arg(long, value_name = "URL", env = "CRASHWATCH_HEALTH_URL")]
    pub health_url: Option<String>,

    /// Time between two health checks
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_HEALTH_INTERVAL", default_value = "10s",
          value_parser = parse_duration)]
    pub health_interval: Duration,

    /// A health check without an answer for this long failed
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_HEALTH_TIMEOUT", default_value = "5s",
          value_parser = parse_duration)]
    pub health_timeout: Duration,

    /// Failures in a row that make a hang
    #[arg(long, value_name = "N", env = "CRASHWATCH_HEALTH_FAILURES", default_value_t = 3)]
    pub health_failures: u32,

    /// Time the program is given to start before the first check (like
    /// Docker's --health-start-period) [default: --health-interval]
    #[arg(long, value_name = "DURATION", env = "CRASHWATCH_HEALTH_START_PERIOD", value_parser = parse_duration)]
    pub health_start_period: Option<Duration>,
}
