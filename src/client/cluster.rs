//! Redis Cluster on the data plane: which node gets a command, and one worker's exchange of a
//! batch with several nodes.
//!
//! - [`key_slot`] / [`unit_route`]: the slot of an encoded unit of work (its first key, hash tags
//!   honoured) and whether every command in it only reads.
//! - [`ClusterWatch`]: one thread per run keeps the slot map (CLUSTER SHARDS, or CLUSTER SLOTS
//!   on servers before 7.0) through the control plane, every [`REFRESH_PERIOD`] and whenever a
//!   worker asks (MOVED, a dead node). Workers compare its generation between batches.
//! - [`ClusterPipeline`]: a worker's connections, one per node it talks to. A batch of units
//!   is split per node (each node gets its units with one write), replies are handed back in
//!   the batch's order, MOVED and ASK are followed by sending the unit again, and a node that
//!   cannot be reached is retried with backoff, never in a tight loop, while the rest of the
//!   batch goes on to the healthy nodes.
//!
//! Per command there is no allocation: units are copied from a reused scratch buffer into
//! reused per-node buffers. Learning the topology (a MOVED to a new node, a refresh) allocates,
//! rarely.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::backoff::{Backoff, jitter_rng};
use crate::client::conn::{ConnectError, RespConnection, connect_to};
use crate::client::tls::DataStream;
use crate::config::{RedisConfig, RetryPolicy};
use crate::error::ErrorClass;
use crate::proto::encode;
use crate::proto::resp::{self, Reply, ReplyKind};
use crate::workload::WorkerRng;

/// Hash slots of a Redis Cluster.
pub const SLOTS: usize = 16384;
/// How often the watcher asks for the slot map without being asked to.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(1);
/// Shortest gap between two refreshes, however often workers ask (during an outage every
/// worker asks on every failed connect).
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);
/// Times a unit is sent again after MOVED/ASK within one batch before its last redirect
/// reply stands as its result.
const MAX_REDIRECTS: usize = 3;
/// A slot no shard serves.
const NO_SHARD: u16 = u16::MAX;

static CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// The part of a key that is hashed: the text between the first `{` and the next `}` when
/// that is not empty, else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The cluster slot of a key.
#[inline]
pub fn key_slot(key: &[u8]) -> u16 {
    CRC16.checksum(hash_tag(key)) & (SLOTS as u16 - 1)
}

/// Where a unit of work goes: the slot of its first key (`None`: no command in it has a
/// key) and whether every command in it only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub slot: Option<u16>,
    pub read_only: bool,
}

/// Reads the encoded commands of `unit` (RESP arrays of bulk strings, as the workloads write
/// them) to find its route. Multi-key commands and transactions use hash-tagged keys, so the
/// first key speaks for the whole unit.
pub fn unit_route(unit: &[u8]) -> Route {
    let mut route = Route {
        slot: None,
        read_only: true,
    };
    let mut rest = unit;
    while let Ok(Some((reply, used))) = resp::scan(rest) {
        if let ReplyKind::Array(argc) = reply.kind {
            let mut args = Args {
                buf: &rest[reply.payload.clone()],
                left: argc,
            };
            if let Some(name) = args.next() {
                route.read_only &= is_read_only(name);
                if route.slot.is_none() {
                    route.slot = first_key(name, args).map(key_slot);
                }
            }
        }
        rest = &rest[used..];
        if rest.is_empty() {
            break;
        }
    }
    route
}

/// The bulk-string arguments of one encoded command.
struct Args<'a> {
    buf: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (reply, used) = resp::scan(self.buf).ok()??;
        let arg = &self.buf[reply.payload];
        self.buf = &self.buf[used..];
        self.left -= 1;
        Some(arg)
    }
}

/// The first key of a command named `name` whose remaining arguments are `args`.
fn first_key<'a>(name: &[u8], mut args: Args<'a>) -> Option<&'a [u8]> {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("MULTI") || is("EXEC") || is("DISCARD") || is("PING") || is("ECHO") || is("UNWATCH") {
        return None;
    }
    if is("XREAD") || is("XREADGROUP") {
        return args
            .find(|a| a.eq_ignore_ascii_case(b"STREAMS"))
            .and_then(|_| args.next());
    }
    if is("EVAL") || is("EVALSHA") || is("EVAL_RO") || is("EVALSHA_RO") || is("FCALL") {
        let _script = args.next()?;
        let numkeys = args.next()?;
        return if numkeys == b"0" { None } else { args.next() };
    }
    args.next()
}

/// Commands that only read, which `--read-from-replicas` may send to a replica.
fn is_read_only(name: &[u8]) -> bool {
    const READS: &[&str] = &[
        "GET",
        "MGET",
        "EXISTS",
        "STRLEN",
        "GETRANGE",
        "TTL",
        "PTTL",
        "TYPE",
        "HGET",
        "HMGET",
        "HGETALL",
        "HLEN",
        "HEXISTS",
        "HKEYS",
        "HVALS",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "SCARD",
        "SISMEMBER",
        "SMEMBERS",
        "SRANDMEMBER",
        "SUNION",
        "SINTER",
        "SDIFF",
        "ZRANGE",
        "ZSCORE",
        "ZCARD",
        "ZRANK",
        "ZCOUNT",
        "ZRANGEBYSCORE",
        "XRANGE",
        "XREVRANGE",
        "XLEN",
        "XREAD",
    ];
    READS
        .iter()
        .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
}

/// A `-MOVED` or `-ASK` reply: the slot lives (for good, or for this one command) at
/// `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect<'a> {
    pub ask: bool,
    pub slot: u16,
    pub host: &'a str,
    pub port: u16,
}

/// Parses `MOVED 3999 127.0.0.1:6381` / `ASK 3999 127.0.0.1:6381` (an empty host means the
/// node that answered; not seen with the default endpoint type).
pub fn parse_redirect(payload: &[u8]) -> Option<Redirect<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.split(' ');
    let ask = match words.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let slot: u16 = words.next()?.parse().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    Some(Redirect {
        ask,
        slot: slot.min(SLOTS as u16 - 1),
        host,
        port: port.parse().ok()?,
    })
}

/// One shard: its master and its replicas, as indexes into the watch's node registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub master: u16,
    pub replicas: Vec<u16>,
}

/// A slot map: which shard serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// `SLOTS` entries: index into `shards`, or `NO_SHARD`.
    pub slot_shard: Vec<u16>,
    pub shards: Vec<Shard>,
}

impl Topology {
    /// The master serving `slot`, if any shard does.
    pub fn master_of(&self, slot: u16) -> Option<u16> {
        let shard = *self.slot_shard.get(slot as usize)?;
        self.shards.get(shard as usize).map(|s| s.master)
    }

    /// Slots no shard serves.
    pub fn uncovered(&self) -> usize {
        self.slot_shard.iter().filter(|&&s| s == NO_SHARD).count()
    }
}

/// A shard as a node reports it: slot ranges and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawShard {
    ranges: Vec<(u16, u16)>,
    master: (String, u16),
    replicas: Vec<(String, u16)>,
}

/// The run's view of the cluster, kept current by one thread. Node indexes are stable for the
/// whole run (the registry only grows), so workers can index their connections by them.
pub struct ClusterWatch {
    cfg: RedisConfig,
    nodes: Mutex<Vec<(String, u16)>>,
    topology: Mutex<Arc<Topology>>,
    generation: AtomicU64,
    refresh_wanted: AtomicBool,
    stop: AtomicBool,
}

impl ClusterWatch {
    /// Learns the slot map from the first seed that answers, then starts the refresh thread.
    /// The error says why no seed gave a map (e.g. a server without cluster support).
    pub fn start(cfg: &RedisConfig) -> Result<Arc<ClusterWatch>, String> {
        let seeds = cfg
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_else(|| vec![(cfg.host.clone(), cfg.port)]);
        let raw = fetch_any(cfg, &seeds)?;
        let watch = Arc::new(ClusterWatch {
            cfg: cfg.clone(),
            nodes: Mutex::new(seeds),
            topology: Mutex::new(Arc::new(Topology {
                slot_shard: vec![NO_SHARD; SLOTS],
                shards: Vec::new(),
            })),
            generation: AtomicU64::new(0),
            refresh_wanted: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let topology = watch.build(&raw);
        let uncovered = topology.uncovered();
        if uncovered > 0 {
            tracing::warn!(
                uncovered,
                "the cluster does not serve every slot (CLUSTERDOWN replies are likely)"
            );
        }
        *watch.lock_topology() = Arc::new(topology);
        let w = Arc::clone(&watch);
        let spawned = std::thread::Builder::new()
            .name("cluster-watch".into())
            .spawn(move || w.refresh_loop());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the cluster watcher; the slot map is followed through MOVED only");
        }
        Ok(watch)
    }

    fn lock_topology(&self) -> std::sync::MutexGuard<'_, Arc<Topology>> {
        self.topology.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, Vec<(String, u16)>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current slot map.
    pub fn topology(&self) -> Arc<Topology> {
        Arc::clone(&self.lock_topology())
    }

    /// Bumped every time the slot map changes.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Asks the watcher to refresh the slot map soon (coalesced; at most every 100 ms).
    pub fn request_refresh(&self) {
        self.refresh_wanted.store(true, Ordering::Relaxed);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The registry index of `host:port`, registering it if new.
    pub fn node_index(&self, host: &str, port: u16) -> u16 {
        let mut nodes = self.lock_nodes();
        if let Some(i) = nodes.iter().position(|(h, p)| h == host && *p == port) {
            return i as u16;
        }
        nodes.push((host.to_string(), port));
        (nodes.len() - 1) as u16
    }

    /// The address of registry entry `index`.
    pub fn node_addr(&self, index: u16) -> Option<(String, u16)> {
        self.lock_nodes().get(index as usize).cloned()
    }

    /// Every address known so far (masters and replicas, current and former).
    pub fn known_nodes(&self) -> Vec<(String, u16)> {
        self.lock_nodes().clone()
    }

    /// The masters of the current slot map, as addresses.
    pub fn masters(&self) -> Vec<(String, u16)> {
        let topology = self.topology();
        topology
            .shards
            .iter()
            .filter_map(|s| self.node_addr(s.master))
            .collect()
    }

    fn build(&self, raw: &[RawShard]) -> Topology {
        // Nodes list shards and replicas in their own order: sort, so the same map from
        // another node compares equal.
        let mut raw = raw.to_vec();
        for s in &mut raw {
            s.ranges.sort_unstable();
            s.replicas.sort_unstable();
        }
        raw.sort_by_key(|s| s.ranges.first().copied());
        let mut slot_shard = vec![NO_SHARD; SLOTS];
        let mut shards = Vec::with_capacity(raw.len());
        for s in &raw {
            let index = shards.len() as u16;
            shards.push(Shard {
                master: self.node_index(&s.master.0, s.master.1),
                replicas: s
                    .replicas
                    .iter()
                    .map(|(h, p)| self.node_index(h, *p))
                    .collect(),
            });
            for &(first, last) in &s.ranges {
                for slot in first..=last.min(SLOTS as u16 - 1) {
                    slot_shard[slot as usize] = index;
                }
            }
        }
        Topology { slot_shard, shards }
    }

    fn refresh_loop(&self) {
        let mut last_refresh = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
            let since = last_refresh.elapsed();
            let wanted = self.refresh_wanted.load(Ordering::Relaxed) && since >= MIN_REFRESH_GAP;
            if !wanted && since < REFRESH_PERIOD {
                continue;
            }
            self.refresh_wanted.store(false, Ordering::Relaxed);
            last_refresh = Instant::now();
            self.refresh();
        }
    }

    /// Asks the current masters, then every other known node, for the slot map; publishes it
    /// when it changed. Nodes that cannot answer are skipped; if none can, nothing changes.
    pub fn refresh(&self) {
        let mut ask = self.masters();
        for n in self.known_nodes() {
            if !ask.contains(&n) {
                ask.push(n);
            }
        }
        let Ok(raw) = fetch_any(&self.cfg, &ask) else {
            return;
        };
        let topology = self.build(&raw);
        let mut current = self.lock_topology();
        if **current != topology {
            tracing::info!(
                shards = topology.shards.len(),
                "the cluster's slot map changed; workers follow it"
            );
            *current = Arc::new(topology);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The slot map from the first of `nodes` that gives one.
fn fetch_any(cfg: &RedisConfig, nodes: &[(String, u16)]) -> Result<Vec<RawShard>, String> {
    let mut failures = Vec::new();
    for (host, port) in nodes {
        match fetch(cfg, host, *port) {
            Ok(raw) => return Ok(raw),
            Err(e) => failures.push(format!("{host}:{port}: {e}")),
        }
    }
    Err(format!(
        "no cluster node gave a slot map ({})",
        failures.join("; ")
    ))
}

/// One node's slot map: CLUSTER SHARDS (Redis 7+), else CLUSTER SLOTS.
fn fetch(cfg: &RedisConfig, host: &str, port: u16) -> Result<Vec<RawShard>, String> {
    let mut conn = crate::control::connection_to(cfg, host, port).map_err(|e| e.to_string())?;
    match redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query::<redis::Value>(&mut conn)
    {
        Ok(v) => parse_shards(&v, cfg.tls.is_some()),
        Err(e) if is_disabled(&e) => Err(not_cluster()),
        Err(_) => {
            let v = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<redis::Value>(&mut conn)
                .map_err(|e| {
                    if is_disabled(&e) {
                        not_cluster()
                    } else {
                        e.to_string()
                    }
                })?;
            parse_slots(&v)
        }
    }
}

fn is_disabled(e: &redis::RedisError) -> bool {
    e.to_string().contains("cluster support disabled")
}

fn not_cluster() -> String {
    "not a cluster node (cluster support disabled); drop --cluster to use it as a standalone server"
        .to_string()
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        redis::Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

fn items(v: &redis::Value) -> Option<&[redis::Value]> {
    match v {
        redis::Value::Array(a) | redis::Value::Set(a) => Some(a),
        _ => None,
    }
}

/// A RESP3 map or a RESP2 flat array of key/value pairs, as `(key, value)` pairs.
fn fields(v: &redis::Value) -> Vec<(String, &redis::Value)> {
    match v {
        redis::Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        redis::Value::Array(a) => a
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k)?, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(pairs: &[(String, &'a redis::Value)], name: &str) -> Option<&'a redis::Value> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

fn bad_map() -> String {
    "unexpected CLUSTER SHARDS/SLOTS answer".to_string()
}

fn parse_shards(v: &redis::Value, tls: bool) -> Result<Vec<RawShard>, String> {
    let mut out = Vec::new();
    for shard in items(v).ok_or_else(bad_map)? {
        let f = fields(shard);
        let bounds: Vec<i64> = items(field(&f, "slots").ok_or_else(bad_map)?)
            .ok_or_else(bad_map)?
            .iter()
            .filter_map(int)
            .collect();
        let ranges: Vec<(u16, u16)> = bounds
            .chunks(2)
            .filter_map(|r| match r {
                [a, b] => Some((*a as u16, *b as u16)),
                _ => None,
            })
            .collect();
        let mut master = None;
        let mut replicas = Vec::new();
        for node in items(field(&f, "nodes").ok_or_else(bad_map)?).ok_or_else(bad_map)? {
            let n = fields(node);
            let host = field(&n, "endpoint")
                .and_then(text)
                .filter(|h| !h.is_empty() && h != "?")
                .or_else(|| field(&n, "ip").and_then(text));
            let port = if tls {
                field(&n, "tls-port").or_else(|| field(&n, "port"))
            } else {
                field(&n, "port")
            }
            .and_then(int);
            let (Some(host), Some(port)) = (host, port) else {
                continue;
            };
            let role = field(&n, "role").and_then(text).unwrap_or_default();
            let health = field(&n, "health").and_then(text).unwrap_or_default();
            if role == "master" {
                master = Some((host, port as u16));
            } else if health == "online" {
                replicas.push((host, port as u16));
            }
        }
        // A shard without slots (an empty master, or a failed master's leftovers) serves
        // nothing.
        if let (Some(master), false) = (master, ranges.is_empty()) {
            out.push(RawShard {
                ranges,
                master,
                replicas,
            });
        }
    }
    Ok(out)
}

fn parse_slots(v: &redis::Value) -> Result<Vec<RawShard>, String> {
    let mut out: Vec<RawShard> = Vec::new();
    for range in items(v).ok_or_else(bad_map)? {
        let r = items(range).ok_or_else(bad_map)?;
        let (Some(first), Some(last)) = (r.first().and_then(int), r.get(1).and_then(int)) else {
            return Err(bad_map());
        };
        let addr = |node: &redis::Value| -> Option<(String, u16)> {
            let n = items(node)?;
            Some((text(n.first()?)?, int(n.get(1)?)? as u16))
        };
        let Some(master) = r.get(2).and_then(addr) else {
            continue;
        };
        let replicas = r.iter().skip(3).filter_map(addr).collect();
        let range = (first as u16, last as u16);
        match out.iter_mut().find(|s| s.master == master) {
            Some(s) => s.ranges.push(range),
            None => out.push(RawShard {
                ranges: vec![range],
                master,
                replicas,
            }),
        }
    }
    Ok(out)
}

/// What happened to a unit of a batch, as the worker records it.
pub enum Event<'a> {
    /// Reply `op` (index into the caller's op list) of a unit. `redirect`: a MOVED/ASK reply
    /// (the unit is sent again). `recovers`: a success on the shard whose failure opened the
    /// worker's outage episode.
    Reply {
        op: usize,
        reply: &'a Reply,
        payload: &'a [u8],
        at: Instant,
        redirect: bool,
        recovers: bool,
        /// A cluster error reply other than a redirect (CLUSTERDOWN, TRYAGAIN): an
        /// outage-class failure.
        outage: bool,
    },
    /// Ops `ops` got no reply: their node failed (`sent`) or could not be reached and they
    /// were never sent.
    Failed {
        ops: std::ops::Range<usize>,
        class: ErrorClass,
        sent: bool,
    },
    /// A connect attempt to a node ended; `down_since`: the node's previous connection was
    /// lost then.
    Connect {
        ok: bool,
        at: Instant,
        down_since: Option<Instant>,
    },
    /// A working node connection was lost.
    Dropped { at: Instant },
    /// The events that follow, up to the next `Node`, are about the unit sent to this node
    /// (`host:port`): what the worker's command spans name as the server.
    Node(&'a Arc<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitState {
    /// Waiting to be sent to `node`; `ask`: after an ASK redirect (ASKING goes first).
    Pending {
        ask: bool,
    },
    /// Written to its node; `ask`: an ASKING reply comes first.
    Sent {
        ask: bool,
    },
    /// Could not be sent: its node is unreachable for now.
    NotSent(ErrorClass),
    /// Answered with a redirect: send again to `node` (already updated).
    Redirected {
        ask: bool,
    },
    Done,
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    ops_start: usize,
    ops_end: usize,
    slot: u16,
    node: u16,
    state: UnitState,
}

/// One worker's connection to one node.
struct NodeConn {
    addr: (String, u16),
    /// `host:port`, shared with the worker's spans (see [`Event::Node`]).
    label: Arc<str>,
    conn: Option<RespConnection<DataStream>>,
    backoff: Backoff,
    /// No connect attempt before this (after a failed one).
    retry_at: Option<Instant>,
    /// When the last working connection was lost (for the reconnection duration).
    down_since: Option<Instant>,
    /// Failed during the current batch: the rest of its units fail too.
    failed: Option<ErrorClass>,
    pending: bool,
}

/// A worker's connections to the cluster and its copy of the slot map.
pub struct ClusterPipeline {
    watch: Arc<ClusterWatch>,
    generation: u64,
    topology: Arc<Topology>,
    /// Slot -> master node, the worker's own copy: MOVED updates it at once, before the
    /// watcher's next refresh.
    slot_node: Vec<u16>,
    nodes: Vec<NodeConn>,
    scratch: Vec<u8>,
    units: Vec<Unit>,
    read_from_replicas: bool,
    /// Spreads replica reads over a shard's replicas (and keyless units over the slots).
    spread: usize,
    rng: WorkerRng,
    retry: RetryPolicy,
    /// The slot whose failure opened the outage episode, if one is open.
    outage_slot: Option<u16>,
}

impl ClusterPipeline {
    /// A pipeline for worker `index`; connects lazily, node by node, on first use.
    pub fn new(watch: Arc<ClusterWatch>, cfg: &RedisConfig, index: usize) -> ClusterPipeline {
        let mut p = ClusterPipeline {
            generation: watch.generation(),
            topology: watch.topology(),
            watch,
            slot_node: vec![0; SLOTS],
            nodes: Vec::new(),
            scratch: Vec::with_capacity(16 * 1024),
            units: Vec::with_capacity(64),
            read_from_replicas: cfg.cluster.as_ref().is_some_and(|c| c.read_from_replicas),
            spread: index,
            rng: jitter_rng(index),
            retry: cfg.retry,
            outage_slot: None,
        };
        p.adopt_topology();
        p
    }

    /// Opens a connection to the master of every shard now, so a bad password or an
    /// unreachable node fails the run at start instead of showing up as errors.
    pub fn connect_all(
        &mut self,
        cfg: &RedisConfig,
        client_name: &str,
    ) -> Result<(), ConnectError> {
        let masters: Vec<u16> = self.topology.shards.iter().map(|s| s.master).collect();
        for node in masters {
            self.grow(node);
            let (host, port) = self.nodes[node as usize].addr.clone();
            let conn = open(cfg, &host, port, client_name, self.read_from_replicas)?;
            self.nodes[node as usize].conn = Some(conn);
        }
        Ok(())
    }

    /// Number of node connections open now (for the open-connections gauge).
    pub fn open_connections(&self) -> usize {
        self.nodes.iter().filter(|n| n.conn.is_some()).count()
    }

    /// Follows the watcher's slot map if it changed since the last look. One atomic load
    /// when it did not.
    #[inline]
    pub fn follow_topology(&mut self) {
        if self.watch.generation() != self.generation {
            self.adopt_topology();
        }
    }

    #[cold]
    fn adopt_topology(&mut self) {
        self.generation = self.watch.generation();
        self.topology = self.watch.topology();
        for slot in 0..SLOTS {
            if let Some(master) = self.topology.master_of(slot as u16) {
                self.slot_node[slot] = master;
            }
        }
        // Node indexes only grow: the highest one named decides the length.
        let highest = self
            .topology
            .shards
            .iter()
            .flat_map(|s| std::iter::once(s.master).chain(s.replicas.iter().copied()))
            .max();
        if let Some(node) = highest {
            self.grow(node);
        }
    }

    /// Makes sure `nodes[node]` exists (also for a node first heard of in a redirect).
    fn grow(&mut self, node: u16) {
        while self.nodes.len() <= node as usize {
            let i = self.nodes.len() as u16;
            let addr = self.watch.node_addr(i).unwrap_or_default();
            let label = crate::config::load::listen_text(&addr.0, addr.1).into();
            self.nodes.push(NodeConn {
                addr,
                label,
                conn: None,
                backoff: Backoff::new(self.retry),
                retry_at: None,
                down_since: None,
                failed: None,
                pending: false,
            });
        }
    }

    /// Starts a batch: clears the scratch buffer and the unit list.
    #[inline]
    pub fn begin(&mut self) {
        self.scratch.clear();
        self.units.clear();
    }

    /// The buffer the next unit is encoded into.
    #[inline]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.scratch
    }

    /// Ends the unit encoded since the last call; its replies are ops `ops_start..ops_end` of
    /// the caller's op list.
    #[inline]
    pub fn end_unit(&mut self, ops_start: usize, ops_end: usize) {
        let start = self.units.last().map_or(0, |u| u.end);
        self.units.push(Unit {
            start,
            end: self.scratch.len(),
            ops_start,
            ops_end,
            slot: 0,
            node: 0,
            state: UnitState::Pending { ask: false },
        });
    }

    /// Sends the batch's units to their nodes and hands every outcome to `on`, in the order
    /// the units were encoded.
    pub fn exchange<F: FnMut(Event<'_>)>(
        &mut self,
        cfg: &RedisConfig,
        client_name: &str,
        on: &mut F,
    ) {
        for u in 0..self.units.len() {
            let unit = self.units[u];
            let route = unit_route(&self.scratch[unit.start..unit.end]);
            // Keyless units are spread over the slots (and so over the masters).
            let slot = route.slot.unwrap_or((self.spread * 7919 % SLOTS) as u16);
            let node = self.pick(slot, route.read_only && route.slot.is_some());
            self.units[u].slot = slot;
            self.units[u].node = node;
        }
        for round in 0..=MAX_REDIRECTS {
            self.send_pending(cfg, client_name, on);
            self.read_replies(on);
            let mut again = false;
            for unit in &mut self.units {
                if let UnitState::Redirected { ask } = unit.state {
                    unit.state = if round < MAX_REDIRECTS {
                        again = true;
                        UnitState::Pending { ask }
                    } else {
                        UnitState::Done
                    };
                }
            }
            if !again {
                break;
            }
        }
        for n in &mut self.nodes {
            n.failed = None;
        }
    }

    /// The node for a unit on `slot`: its master, or with `--read-from-replicas` a reachable
    /// replica for read-only units.
    fn pick(&mut self, slot: u16, read_only: bool) -> u16 {
        let master = self.slot_node[slot as usize];
        if !(read_only && self.read_from_replicas) {
            return master;
        }
        let Some(shard) = self
            .topology
            .slot_shard
            .get(slot as usize)
            .and_then(|&s| self.topology.shards.get(s as usize))
        else {
            return master;
        };
        if shard.master != master || shard.replicas.is_empty() {
            // MOVED since the last refresh: the replica list is stale.
            return master;
        }
        let replica = shard.replicas[self.spread % shard.replicas.len()];
        let usable = self
            .nodes
            .get(replica as usize)
            .is_some_and(|n| n.conn.is_some() || n.retry_at.is_none_or(|at| Instant::now() >= at));
        if usable { replica } else { master }
    }

    /// Writes every pending unit to its node (one write per node).
    fn send_pending<F: FnMut(Event<'_>)>(
        &mut self,
        cfg: &RedisConfig,
        client_name: &str,
        on: &mut F,
    ) {
        for u in 0..self.units.len() {
            let UnitState::Pending { ask } = self.units[u].state else {
                continue;
            };
            let unit = self.units[u];
            let node = unit.node as usize;
            if self.nodes[node].failed.is_none()
                && !self.ensure_connected(node, cfg, client_name, on)
            {
                // Between reconnect attempts: the slot map may already point elsewhere.
                self.watch.request_refresh();
                self.units[u].state = UnitState::NotSent(ErrorClass::ConnectionError);
                continue;
            }
            let n = &mut self.nodes[node];
            if let Some(class) = n.failed {
                // Failed earlier in this batch: the unit fails with it, unsent.
                self.units[u].state = UnitState::NotSent(class);
                continue;
            }
            let Some(conn) = n.conn.as_mut() else {
                self.units[u].state = UnitState::NotSent(ErrorClass::ConnectionError);
                continue;
            };
            if ask {
                encode::command_args(conn.request_buf(), &[b"ASKING"]);
            }
            conn.request_buf()
                .extend_from_slice(&self.scratch[unit.start..unit.end]);
            n.pending = true;
            self.units[u].state = UnitState::Sent { ask };
        }
        for i in 0..self.nodes.len() {
            if !std::mem::take(&mut self.nodes[i].pending) {
                continue;
            }
            let result = match self.nodes[i].conn.as_mut() {
                Some(conn) => conn.flush(),
                None => continue,
            };
            if let Err(e) = result {
                self.node_failed(i, e.class(), on);
            }
        }
    }

    /// Connects to `node` unless it is connected or its backoff says not yet. A failed
    /// attempt asks the watcher for a fresh slot map: the node may be gone for good.
    fn ensure_connected<F: FnMut(Event<'_>)>(
        &mut self,
        node: usize,
        cfg: &RedisConfig,
        client_name: &str,
        on: &mut F,
    ) -> bool {
        let read_only = self.read_from_replicas;
        let n = &mut self.nodes[node];
        if n.conn.is_some() {
            return true;
        }
        if n.retry_at.is_some_and(|at| Instant::now() < at) {
            return false;
        }
        let (host, port) = n.addr.clone();
        let result = open(cfg, &host, port, client_name, read_only);
        let at = Instant::now();
        match result {
            Ok(conn) => {
                on(Event::Connect {
                    ok: true,
                    at,
                    down_since: n.down_since.take(),
                });
                n.conn = Some(conn);
                n.retry_at = None;
                n.backoff.succeeded();
                true
            }
            Err(e) => {
                on(Event::Connect {
                    ok: false,
                    at,
                    down_since: None,
                });
                n.backoff.failed();
                n.retry_at = Some(at + n.backoff.next_delay(&mut self.rng));
                tracing::debug!(node = %format!("{host}:{port}"), error = %e, "cluster node connect failed");
                self.watch.request_refresh();
                false
            }
        }
    }

    /// `node`'s connection failed with `class`: drop it; its remaining units fail.
    #[cold]
    fn node_failed<F: FnMut(Event<'_>)>(&mut self, node: usize, class: ErrorClass, on: &mut F) {
        let n = &mut self.nodes[node];
        n.failed = Some(class);
        if n.conn.take().is_some() {
            let at = Instant::now();
            n.down_since.get_or_insert(at);
            on(Event::Dropped { at });
            tracing::warn!(node = %format!("{}:{}", n.addr.0, n.addr.1), error_type = %class, "cluster node connection lost; reconnecting");
        }
        self.watch.request_refresh();
    }

    /// Reads the replies of every sent unit, in unit order.
    fn read_replies<F: FnMut(Event<'_>)>(&mut self, on: &mut F) {
        for u in 0..self.units.len() {
            let unit = self.units[u];
            if !matches!(unit.state, UnitState::Done)
                && let Some(node) = self.nodes.get(unit.node as usize)
            {
                on(Event::Node(&node.label));
            }
            let ask = match unit.state {
                UnitState::Sent { ask } => ask,
                UnitState::NotSent(class) => {
                    self.note_failure(unit.slot);
                    on(Event::Failed {
                        ops: unit.ops_start..unit.ops_end,
                        class,
                        sent: false,
                    });
                    self.units[u].state = UnitState::Done;
                    continue;
                }
                _ => continue,
            };
            self.units[u].state = UnitState::Done;
            let node = unit.node as usize;
            if let Some(class) = self.nodes[node].failed {
                self.note_failure(unit.slot);
                on(Event::Failed {
                    ops: unit.ops_start..unit.ops_end,
                    class,
                    sent: true,
                });
                continue;
            }
            if ask && let Some(conn) = self.nodes[node].conn.as_mut() {
                // ASKING's +OK is ours, not the workload's.
                if let Err(e) = conn.read_reply() {
                    self.note_failure(unit.slot);
                    self.node_failed(node, e.class(), on);
                    on(Event::Failed {
                        ops: unit.ops_start..unit.ops_end,
                        class: e.class(),
                        sent: true,
                    });
                    continue;
                }
            }
            let recovers_node = self.outage_slot.map(|s| self.slot_node[s as usize]);
            let mut redirect_to: Option<(u16, bool)> = None;
            let mut moved: Option<(u16, u16, u16)> = None;
            for op in unit.ops_start..unit.ops_end {
                let Some(conn) = self.nodes[node].conn.as_mut() else {
                    break;
                };
                match conn.read_reply() {
                    Ok(reply) => {
                        let payload = conn.payload(&reply);
                        let mut redirect = false;
                        if reply.kind == ReplyKind::Error
                            && let Some(r) = parse_redirect(payload)
                        {
                            redirect = true;
                            if redirect_to.is_none() {
                                let target = self.watch.node_index(r.host, r.port);
                                redirect_to = Some((target, r.ask));
                                if !r.ask {
                                    moved = Some((r.slot, unit.node, target));
                                }
                            }
                        }
                        // CLUSTERDOWN, TRYAGAIN, MASTERDOWN: the slot is unavailable.
                        let outage = reply.kind == ReplyKind::Error
                            && !redirect
                            && ErrorClass::from_error_reply(payload) == ErrorClass::ClusterError;
                        if outage {
                            self.outage_slot.get_or_insert(unit.slot);
                        }
                        let recovers =
                            reply.kind != ReplyKind::Error && recovers_node == Some(unit.node);
                        if recovers {
                            self.outage_slot = None;
                        }
                        on(Event::Reply {
                            op,
                            reply: &reply,
                            payload,
                            at: conn.reply_received_at(),
                            redirect,
                            recovers,
                            outage,
                        });
                    }
                    Err(e) => {
                        let class = e.class();
                        self.note_failure(unit.slot);
                        self.node_failed(node, class, on);
                        on(Event::Failed {
                            ops: op..unit.ops_end,
                            class,
                            sent: true,
                        });
                        break;
                    }
                }
            }
            if let Some((slot, from, to)) = moved {
                self.moved(slot, from, to);
            }
            if let Some((target, ask)) = redirect_to {
                if !ask {
                    self.watch.request_refresh();
                }
                self.grow(target);
                self.units[u].node = target;
                self.units[u].state = UnitState::Redirected { ask };
            }
        }
    }

    /// `slot` moved from node `from` to node `to`. If `to` serves no slot yet, a failover
    /// promoted it (a replica takes over its master's slots) and every slot of `from` moved
    /// with it; otherwise (a slot migration between masters) only `slot` did. The watcher's
    /// refresh confirms either way.
    #[cold]
    fn moved(&mut self, slot: u16, from: u16, to: u16) {
        if self.slot_node.contains(&to) {
            self.slot_node[slot as usize] = to;
            return;
        }
        for node in &mut self.slot_node {
            if *node == from {
                *node = to;
            }
        }
    }

    /// A unit on `slot` failed with an outage-class error: remember the slot if no episode
    /// is open (its shard's recovery ends the episode).
    #[inline]
    fn note_failure(&mut self, slot: u16) {
        self.outage_slot.get_or_insert(slot);
    }
}

/// Connects to one node: TCP/TLS, handshake, and READONLY when replicas may serve reads.
fn open(
    cfg: &RedisConfig,
    host: &str,
    port: u16,
    client_name: &str,
    read_only: bool,
) -> Result<RespConnection<DataStream>, ConnectError> {
    let mut conn = connect_to(cfg, host, port, client_name)?;
    if read_only {
        encode::command_args(conn.request_buf(), &[b"READONLY"]);
        conn.flush()?;
        let reply = conn.read_reply()?;
        if reply.is_error() {
            return Err(ConnectError::Rejected {
                command: "READONLY",
                message: String::from_utf8_lossy(conn.payload(&reply)).into_owned(),
                class: ErrorClass::ClusterError,
            });
        }
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    fn encode_all(commands: &[&[&[u8]]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in commands {
            encode::command_args(&mut out, c);
        }
        out
    }

    #[test]
    fn route_is_the_first_key_of_the_unit() {
        let set = encode_all(&[&[b"SET", b"k1", b"v"]]);
        assert_eq!(
            unit_route(&set),
            Route {
                slot: Some(key_slot(b"k1")),
                read_only: false
            }
        );
        let get = encode_all(&[&[b"GET", b"k1"]]);
        assert!(unit_route(&get).read_only);
        let tx = encode_all(&[
            &[b"MULTI"],
            &[b"SET", b"{t}:1", b"v"],
            &[b"GET", b"{t}:2"],
            &[b"EXEC"],
        ]);
        let r = unit_route(&tx);
        assert_eq!(r.slot, Some(key_slot(b"t")));
        assert!(!r.read_only);
        let xread = encode_all(&[&[
            b"XREADGROUP",
            b"GROUP",
            b"g",
            b"c",
            b"COUNT",
            b"1",
            b"STREAMS",
            b"s1",
            b">",
        ]]);
        assert_eq!(unit_route(&xread).slot, Some(key_slot(b"s1")));
        let eval = encode_all(&[&[b"EVAL", b"return 1", b"1", b"ek"]]);
        assert_eq!(unit_route(&eval).slot, Some(key_slot(b"ek")));
        assert_eq!(unit_route(&encode_all(&[&[b"PING"]])).slot, None);
    }

    #[test]
    fn redirects_parse() {
        assert_eq!(
            parse_redirect(b"MOVED 3999 127.0.0.1:6381"),
            Some(Redirect {
                ask: false,
                slot: 3999,
                host: "127.0.0.1",
                port: 6381
            })
        );
        assert_eq!(
            parse_redirect(b"ASK 1 ::1:7000").map(|r| (r.ask, r.host, r.port)),
            Some((true, "::1", 7000))
        );
        assert_eq!(parse_redirect(b"ERR wrong"), None);
        assert_eq!(parse_redirect(b"MOVED x 1:2"), None);
    }
}
