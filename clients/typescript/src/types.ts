// The wire shapes of `unstuck serve` (docs/http-api.md, GET /openapi.json). Replies are
// the JSON the server sent: member names as on the wire (snake_case), durations integer
// milliseconds, timestamps RFC 3339 strings.

/** Any JSON value: payloads, results, checkpoints, resume inputs. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A duration on input: integer milliseconds or a string such as "500ms", "30s", "1h 30m". */
export type Duration = number | string;

/** An RFC 3339 time. */
export type Time = string;

export type State =
  | "queued" | "dispatched" | "running" | "stuck" | "awaiting"
  | "succeeded" | "failed" | "cancelled" | "timed_out" | "dead";

export interface Timings {
  start_grace?: Duration;
  heartbeat_timeout?: Duration;
  no_progress_timeout?: Duration | null;
  deadline?: Duration | null;
  stuck_threshold?: Duration;
  max_attempts?: number;
  backoff_base?: Duration;
  backoff_max?: Duration;
  cancel_grace?: Duration;
  max_snoozes?: number;
  /** Loop detection: the same heartbeat fingerprint this many times in a row (2-10000)
   * and the watchdog judges the execution stuck `looping`; absent: off. */
  max_repeats?: number | null;
}

/** Timings as an execution carries them: every member resolved, in milliseconds. */
export interface ResolvedTimings {
  start_grace: number;
  heartbeat_timeout: number;
  no_progress_timeout: number | null;
  deadline: number | null;
  stuck_threshold: number;
  max_attempts: number;
  backoff_base: number;
  backoff_max: number;
  cancel_grace: number;
  max_snoozes: number;
  max_repeats?: number | null;
}

export interface Retention {
  succeeded?: Duration;
  cancelled?: Duration;
  failed?: Duration;
  dead?: Duration;
  timed_out?: Duration;
  max_finished?: number;
}

/** An execution budget: its usage over all attempts (tokens = input + output; cost in
 * micro-units). At `warning_share` (0 < x < 1, 0.8) a `budget_warning` event; at a limit
 * the execution is asked to stop (cancel reason `budget_exceeded`). */
export interface Budget { tokens?: number | null; cost?: number | null; warning_share?: number | null }

/** A queue's budget over a rolling window (`window_ms`, 24 h by default): when spent the
 * queue is paused by `budget`. */
export interface WindowBudget { tokens?: number | null; cost?: number | null; window_ms?: number | null }

/** Sums of usage. */
export interface UsageTotals { input_tokens: number; output_tokens: number; cached_input_tokens: number; cost: number }

/** One usage delta on the wire (`seq` positive, increasing within the attempt). */
export interface UsageDelta {
  input_tokens?: number;
  output_tokens?: number;
  cached_input_tokens?: number;
  cost?: number;
  model?: string;
  seq: number;
}

/** A queue's usage: since its first delta, by model, and over the rolling window. */
export interface QueueUsage {
  queue: string;
  currency: string;
  totals: UsageTotals;
  by_model: Record<string, UsageTotals>;
  window: UsageTotals;
  window_ms: number;
  window_budget?: WindowBudget | null;
}

export interface QueuePause { since: Time; by: string; reason: string }

export interface Queue {
  name: string;
  partition: number;
  depth: number;
  available: number;
  active: number;
  capacity: number | null;
  oldest_queued_at?: Time | null;
  oldest_queued_age_ms?: number | null;
  own_capacity?: number | null;
  timings: Timings | null;
  retention: Retention | null;
  paused: boolean;
  pause?: QueuePause | null;
  max_wait_ms?: number | null;
  on_wait_expiry?: "fail" | "requeue" | null;
  budget?: Budget | null;
  window_budget?: WindowBudget | null;
}

export interface PauseChange { queue: string; paused: boolean; changed: boolean; pause?: QueuePause | null }

export interface QueueSettings {
  capacity?: number;
  timings?: Timings;
  retention?: Retention;
  maxWait?: Duration;
  onWaitExpiry?: "fail" | "requeue";
  /** The default budget of executions enqueued without one. */
  budget?: Budget;
  /** When spent over its window, the queue is paused by `budget`. */
  windowBudget?: WindowBudget;
}

export interface EnqueueItem {
  payload?: Json;
  id?: string;
  timings?: Timings;
  delay?: Duration;
  /** Its usage budget over all attempts (the queue's default when absent). */
  budget?: Budget;
}

export interface Enqueued {
  queue: string;
  id: string;
  created: boolean;
  state: State;
  attempt: number;
  created_at: Time;
  conflict: boolean;
}

export interface StopMetadata {
  reason: string;
  timeout?: number | null;
  timeout_configured?: boolean;
  timeout_fired?: boolean;
}

export interface Transition { at: Time; state: State; reason: string; attempt: number }

export interface Wait { reason: string; since: Time; deadline_at: Time; on_expiry: "fail" | "requeue" }

export interface Execution {
  queue: string;
  id: string;
  state: State;
  attempt: number;
  payload: Json;
  checkpoint: Json;
  result: Json;
  progress: string | null;
  worker: string | null;
  created_at: Time;
  dispatched_at: Time | null;
  started_at: Time | null;
  last_heartbeat_at: Time | null;
  progress_changed_at: Time | null;
  stuck_since: Time | null;
  deadline_at: Time | null;
  cancel_requested_at: Time | null;
  finished_at: Time | null;
  timings: ResolvedTimings;
  stop?: StopMetadata | null;
  last_error: string | null;
  false_alarms: number;
  continuations: number;
  snoozes: number;
  available_at?: Time | null;
  history: Transition[];
  retry_of?: string | null;
  retries: string[];
  pinned: boolean;
  wait?: Wait | null;
  resumed_at?: Time | null;
  resume_input?: Json;
  /** The W3C trace context stored at enqueue (docs/tracing.md). */
  traceparent?: string | null;
  /** The current attempt's last heartbeat fingerprint and its run length. */
  fingerprint?: { last: string; repeats: number } | null;
  /** Usage over all attempts, and by model (absent before any). */
  usage?: (UsageTotals & { by_model: Record<string, UsageTotals> }) | null;
  budget?: Budget | null;
  /** Why the ledger asked it to stop (`budget_exceeded`); absent for an operator's cancel. */
  cancel_reason?: string | null;
}

export interface Page<T> { items: T[]; next_cursor: string | null }

export interface Event {
  id: string;
  stream_id: string;
  partition: number;
  at: Time;
  queue: string;
  execution_id: string;
  attempt: number;
  from?: State | null;
  to?: State | null;
  reason: string;
  detail: string;
  timer_due_at?: Time | null;
  lag_ms?: number | null;
  replica?: string | null;
  epoch?: number | null;
}

export interface TimelineEntry {
  at: Time;
  attempt: number;
  from?: State | null;
  to: State;
  reason: string;
  detail: string;
  lag_ms?: number | null;
  replica?: string | null;
  epoch?: number | null;
  source: "event" | "history";
}

export interface ExecutionEvents { events: Event[]; timeline: TimelineEntry[] }

export type CancelReply =
  | { outcome: "cancelled" }
  | { outcome: "requested"; requested_at: Time; already: boolean };

export interface Resumed { queue: string; id: string; resumed_at: Time; already: boolean; state: State }

export interface Pinned { pinned: boolean; state: State }

export interface Claim {
  token: string;
  queue: string;
  id: string;
  attempt: number;
  payload: Json;
  checkpoint: Json;
  heartbeat_timeout: number;
  deadline_at?: Time | null;
  resume_input?: Json;
  /** The W3C trace context stored at enqueue; absent when none. */
  traceparent?: string;
}

/** `cancel_reason` says why when the ledger (not an operator) asked to stop:
 * `budget_exceeded`. */
export interface HeartbeatReply { cancel_requested: boolean; cancel_reason?: string | null }
export interface Recorded { slot_released: boolean }

export type FailReply =
  | { outcome: "retry_scheduled"; available_at: Time; slot_released: boolean }
  | { outcome: "failed" | "cancelled"; slot_released: boolean };

export type SnoozeReply =
  | { outcome: "snoozed"; available_at: Time; snoozes: number; slot_released: boolean }
  | { outcome: "retry_scheduled"; available_at: Time; slot_released: boolean }
  | { outcome: "failed" | "cancelled"; slot_released: boolean };

export type AwaitReply =
  | { outcome: "awaiting"; resume_token: string; wait_deadline_at: Time; slot_released: boolean }
  | { outcome: "cancelled"; slot_released: boolean };

/** One unit of a resource held by an attempt. */
export interface Holder { queue: string; id: string; attempt: number; since: Time; expires_at?: Time | null }

/** A resource and who holds its units. */
export interface Resource { resource: string; capacity: number; held: number; holders: Holder[] }

/** What an acquire took. */
export interface Acquired { resource: string; capacity: number; held: number; expires_at?: Time | null }

export interface Released { released: boolean }

export interface ForceReleased { released: boolean; attempt?: number | null }

export interface Registered { worker_id: string; registered_at: Time }

export interface Running { queue: string; id: string }

export type WorkerRequest = "restart" | "drain";

export interface WorkerBeatReply { last_seen_at: Time; request?: WorkerRequest | null }

export interface WorkerRemediation {
  tier: number;
  tier_since?: Time | null;
  verdict?: string | null;
  request?: WorkerRequest | null;
  action?: string | null;
  action_detail?: string | null;
  tier3_failures: number;
  circuit_open: boolean;
  circuit_opened_at?: Time | null;
  circuit_reason?: string | null;
}

export interface WorkerInfo {
  worker_id: string;
  host: string;
  pid: number;
  version: string;
  queues: string[];
  registered_at: Time;
  last_seen_at: Time;
  heartbeat_interval?: number | null;
  running: Running[];
  held: Running[];
  remediation: WorkerRemediation;
}

export interface WorkerReset { previous_tier: number; circuit_was_open: boolean }

export interface WorkerEvent {
  stream_id: string;
  at: Time;
  worker_id: string;
  from_tier: number;
  to_tier: number;
  reason: string;
  detail: string;
  actor: string;
}

export interface HealthReason { code: string; message: string }
export interface Health { verdict: "healthy" | "degraded"; summary: string; reasons: HealthReason[] }

export interface WatchdogState {
  at: Time;
  partitions: Array<{
    partition: number;
    owner?: string | null;
    epoch?: number | null;
    lease_expires_at?: Time | null;
    last_round_at?: Time | null;
    hold_until?: Time | null;
    hold_reason?: string | null;
  }>;
  replicas: Array<{ replica_id: string; last_beat_at: Time }>;
  namespace_hold?: { started_at: Time; until: Time; reason: string } | null;
  totals: Record<string, number>;
  data_lost: string[];
  open_circuits: string[];
  workers_in_tier: number;
  health: Health;
}

export interface WatchdogActivity {
  at: Time;
  since: Time;
  minutes: Array<{ minute: Time; actions: Record<string, number> }>;
  totals: Record<string, number>;
  lag: {
    count: number;
    p50_ms?: number | null;
    p90_ms?: number | null;
    p99_ms?: number | null;
    max_ms?: number | null;
    buckets: Array<{ le_ms?: number | null; count: number }>;
  };
  truncated: boolean;
}

export interface Session {
  scope?: string | null;
  open: boolean;
  can_read: boolean;
  can_steer: boolean;
  can_admin: boolean;
}
