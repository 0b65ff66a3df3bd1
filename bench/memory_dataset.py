"""A retrieval set for agent memory: 210 task memories in 5 repos and 75 labelled queries.

Written by hand for the bench (bench/memory_bench.py). Each memory is what a finished
task would leave: title, summary, learnings. Queries are what a new task would bring
(its title and description), each with the memory ids a good recall returns. Most
queries are paraphrases that share few or no words with their target ("app takes too
long to open" for "Reduce app startup time"), labelled `paraphrase`; the rest share
key words (`lexical`). Some expect memories from another repo than the query's.

`distractors(n)` makes filler memories (chores: bumps, lint, docs, renames) to scale
the store to 10,000 for the latency and at-scale recall figures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

REPOS = {
    "web": "acme/web-dashboard",
    "api": "acme/payments-api",
    "infra": "acme/infra",
    "mob": "acme/mobile-app",
    "data": "acme/data-pipeline",
}


@dataclass(frozen=True)
class Memory:
    id: str
    repo: str
    title: str
    summary: str
    learnings: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    text: str
    repo: str | None
    expected: tuple[str, ...]
    style: str  # "paraphrase" | "lexical"


# fmt: off
_RAW: dict[str, list[tuple[str, str, list[str]]]] = {
    "web": [
        ("Improve dashboard rendering performance", "Memoized the chart components and virtualized the orders table; the initial render went from 4 s to 600 ms.", ["Profile with the React Profiler before optimizing", "Inline object props made every chart re-render"]),
        ("Fix OAuth login redirect loop", "The session cookie was SameSite=Strict and got dropped on the OAuth callback, so users landed on the login page again. Switched to Lax.", ["Test the login flow in Safari too"]),
        ("Add dark mode theme", "Colors moved to CSS variables; the theme follows prefers-color-scheme and the toggle is persisted in localStorage.", ["Charts need their own palette for dark backgrounds"]),
        ("Upgrade React 17 to 18", "Migrated to createRoot; strict mode double-invoked effects and surfaced missing cleanups in useEffect.", ["Effects must be idempotent"]),
        ("Fix date picker timezone bug", "Dates shifted by one day for users west of UTC because new Date() parsed ISO date-only strings as UTC.", ["Parse with date-fns-tz and an explicit zone"]),
        ("Add CSV export button to reports table", "Client-side CSV generation with papaparse; very large exports were moved to a server endpoint.", ["Over 50k rows the browser tab froze"]),
        ("Internationalization: German and French translations", "Added react-i18next and extracted strings with i18next-parser.", ["Plural rules differ per language; use ICU message format"]),
        ("Replace moment.js with date-fns", "Swapped moment for date-fns across the app; the bundle shrank by 230 KB.", ["Check webpack-bundle-analyzer after dependency changes"]),
        ("Fix memory leak in live orders websocket", "Websocket subscriptions were not unsubscribed on unmount, so the heap grew on every navigation.", ["Return a cleanup function from useEffect", "Chrome heap snapshots show detached listeners"]),
        ("Add accessibility labels to form inputs", "An axe audit found inputs without labels and low contrast text; added aria-labels and fixed contrast.", ["Run axe in CI with jest-axe"]),
        ("Migrate from Create React App to Vite", "Dev server start went from 40 s to 2 s; env vars renamed from REACT_APP_ to VITE_.", ["Use import.meta.env", "Jest replaced by Vitest"]),
        ("Fix flaky Cypress checkout test", "The checkout spec raced network requests; now uses cy.intercept and waits on the alias.", ["Never use fixed cy.wait(ms)"]),
        ("Paginate the audit log page", "The audit log fetched every row; added cursor pagination with infinite scroll.", ["Use the keyset cursor the API returns"]),
        ("Role-based access control for admin pages", "Route guards read roles from the JWT claims and hide actions the user cannot perform.", ["The server must enforce permissions too"]),
        ("Fix layout on narrow mobile screens", "The sidebar overlapped content under 375 px; added breakpoints and a collapsible drawer.", ["Test with device emulation at 320 px"]),
        ("Add Sentry error reporting", "Source maps are uploaded in CI and releases are tagged with the git sha.", ["Scrub personal data in beforeSend"]),
        ("Real-time notification toasts", "Notifications arrive over server-sent events; toasts are de-duplicated by id.", ["Reconnect with Last-Event-ID"]),
        ("Search autocomplete for customers", "Debounced input (250 ms) and abort the previous fetch with AbortController.", ["Without abort, stale responses overwrote newer results"]),
        ("Enable TypeScript strict mode", "Turned on strictNullChecks and fixed about 300 errors folder by folder.", ["Use ts-expect-error to migrate incrementally"]),
        ("Cache API responses with React Query", "Server state moved from Redux to React Query with tuned staleTime and invalidation after mutations.", ["Query keys must include every filter"]),
        ("Fix Content-Security-Policy violations", "Inline scripts were blocked by CSP; moved them to files and added a nonce for analytics.", ["Roll out CSP in report-only mode first"]),
        ("Playwright end-to-end tests for signup", "Replaced the flaky Selenium suite with Playwright on Chromium in CI.", ["Select elements by test id, not CSS classes"]),
        ("Optimize product gallery images", "Lazy loading, srcset and WebP; largest contentful paint went from 4.1 s to 1.8 s.", ["Set width and height to avoid layout shift"]),
        ("Prevent double submission on the payment form", "The pay button is disabled while pending and an idempotency key is sent to the API.", ["Never rely only on disabling the button"]),
        ("Feature flags with LaunchDarkly", "A useFlag hook wraps the SDK; flags default to off in tests.", ["Remove stale flags every quarter"]),
        ("Storybook for the design system", "Documented buttons, inputs and modals; visual regression testing with Chromatic.", ["Stories double as component tests"]),
        ("Fix infinite re-render in the filters panel", "A useEffect depended on an object recreated on every render; useMemo fixed it.", ["Enable eslint react-hooks/exhaustive-deps"]),
        ("Migrate styles from Sass to Tailwind", "Removed 12k lines of SCSS in favour of utility classes.", ["The purge config must list every template path"]),
        ("Keyboard shortcuts for the orders view", "j/k to move between orders and ? for a help overlay.", ["Do not capture keys while an input has focus"]),
        ("Service worker for offline support", "Workbox precaches the app shell; API GETs use stale-while-revalidate.", ["Version the cache so a deploy does not leave users on an old app"]),
        ("Fix chart tooltips cut off at the screen edge", "Tooltips now use floating-ui for positioning.", ["Render tooltips in a portal on body"]),
        ("Session timeout warning modal", "Warn two minutes before the token expires and refresh it silently while the user is active.", ["Sync across tabs with BroadcastChannel"]),
        ("Replace order status polling with websockets", "Polling every 2 s hammered the API; a websocket pushes status changes.", ["Reconnect with exponential backoff"]),
        ("Upgrade Node 16 to 20 for the frontend build", "OpenSSL 3 broke webpack 4 hashing; upgraded webpack.", ["--openssl-legacy-provider is only a stopgap"]),
        ("Print stylesheet for invoices", "An @media print stylesheet hides navigation and keeps tables readable.", ["Use page-break-inside: avoid for table rows"]),
        ("Document upload with progress bar", "Chunked uploads to S3 presigned URLs with a progress bar.", ["Retry failed chunks individually"]),
        ("Fix XSS in comment rendering", "Comments rendered user markdown with dangerouslySetInnerHTML; now sanitized with DOMPurify.", ["Never render untrusted HTML without sanitizing"]),
        ("Unit tests for currency formatting", "Intl.NumberFormat per locale; fixed rounding of JPY amounts.", ["JPY has zero decimal places"]),
        ("Analytics events for the signup funnel", "Segment track calls on key steps, gated on consent.", ["No tracking before cookie consent"]),
        ("Code splitting to reduce bundle size", "React.lazy per route; the main chunk went from 1.9 MB to 700 KB.", ["Prefetch the likely next route"]),
        ("Fix stale data shown after logout", "The React Query cache survived logout; queryClient.clear() now runs on logout.", ["Clear localStorage as well"]),
        ("Empty states and skeleton loaders", "Skeleton placeholders while data loads and friendly empty states.", ["Match the skeleton layout to the content"]),
    ],
    "api": [
        ("Idempotency keys for payment creation", "The Idempotency-Key header is stored with the response for 24 h; retried requests return the same charge.", ["Unique constraint on key and merchant"]),
        ("Fix N+1 queries on the invoices list endpoint", "selectinload for line items: 300 queries became 3 and p95 dropped from 1.2 s to 120 ms.", ["Assert the SQL query count per request in tests"]),
        ("Migrate Postgres 13 to 16", "pg_upgrade in link mode, then reindexed.", ["Rehearse on a production snapshot first"]),
        ("Verify Stripe webhook signatures", "Check the Stripe-Signature header with the endpoint secret and reject events older than 5 minutes.", ["Verify against the raw body, not parsed JSON"]),
        ("Rate limit the public API", "Token bucket in Redis per API key; answers 429 with Retry-After.", ["Exempt health checks"]),
        ("Fix currency rounding in partial refunds", "Partial refunds summed incorrectly with floats; switched to Decimal with ROUND_HALF_EVEN.", ["Never use float for money"]),
        ("OpenAPI docs with examples", "Response models and examples for every endpoint.", ["Validate examples with schemathesis"]),
        ("Send receipts from Celery background jobs", "Receipts are sent asynchronously with retries and backoff.", ["Celery tasks must be idempotent"]),
        ("Fix deadlock in concurrent balance updates", "Two transactions updated accounts in opposite order; rows are now locked in id order with SELECT FOR UPDATE.", ["Keep a consistent lock ordering"]),
        ("JWT authentication with key rotation", "JWKS endpoint with kid headers; old keys stay valid for 24 h.", ["Cache the JWKS with a TTL"]),
        ("Keyset pagination for the transactions endpoint", "Pagination on (created_at, id) instead of OFFSET.", ["OFFSET pagination got slow past page 1000"]),
        ("Structured JSON logging with request ids", "structlog plus a correlation id middleware.", ["Never log card numbers; mask the PAN"]),
        ("Upgrade SQLAlchemy 1.4 to 2.0", "New select() style and async sessions.", ["Turn on SQLALCHEMY_WARN_20 before upgrading"]),
        ("Fix timezone bug in the daily settlement report", "Naive datetimes were read in server local time; columns are now timezone-aware UTC.", ["The settlement cutoff is in the merchant's local time"]),
        ("Multi-currency accounts", "Currency column on accounts and an FX rates table refreshed hourly.", ["Store amounts in minor units"]),
        ("Retry failed Stripe API calls", "tenacity with exponential backoff on 5xx and network errors, but not on card declines.", ["Card declines are not retryable"]),
        ("Speed up the pytest suite", "pytest-xdist and transactional fixtures rolled back per test; 14 min down to 3 min.", ["One database per xdist worker"]),
        ("Fraud rules engine", "Rules in YAML evaluated per payment; velocity checks in Redis.", ["Log every rule decision for audit"]),
        ("Export transactions as CSV for accounting", "A StreamingResponse over a generator so large exports do not exhaust memory.", ["Streaming keeps memory flat for big exports"]),
        ("Health and readiness probes", "/healthz checks the process, /readyz checks Postgres and Redis.", ["Readiness must not depend on third parties like Stripe"]),
        ("Encrypt PII at rest", "Application-level AES-GCM encryption of customer emails and phone numbers with keys in KMS.", ["Keep a hashed column for lookups"]),
        ("Fix database connection pool exhaustion", "Sessions leaked in background tasks; they are now closed in finally and pool_size was raised.", ["Use pool_pre_ping for stale connections"]),
        ("Subscription billing with proration", "Stripe subscriptions with proration on plan changes.", ["Preview the invoice before confirming"]),
        ("API versioning with a /v2 prefix", "A /v2 router; v1 is deprecated with a Sunset header.", ["A version in the URL is simplest for clients"]),
        ("Zero-downtime column rename", "Expand and contract: add the new column, dual write, backfill, switch reads, then drop the old one.", ["Never rename a column in one step"]),
        ("Audit log for admin actions", "Append-only table with actor, action and diff.", ["Write the audit row in the same transaction as the change"]),
        ("Fix slow customer search by email", "A pg_trgm trigram index for ILIKE lookups: 2 s down to 20 ms.", ["A btree index does not help leading wildcards"]),
        ("Merchant webhooks with retries", "Payloads signed with HMAC; retried with exponential backoff for up to 3 days.", ["Include an event id so merchants can de-duplicate"]),
        ("Upgrade Python 3.9 to 3.12", "Replaced deprecated asyncio APIs and datetime.utcnow calls.", ["Run tests with -W error::DeprecationWarning"]),
        ("GraphQL endpoint for reporting", "Strawberry GraphQL with dataloaders.", ["Limit query depth"]),
        ("Dispute handling for chargebacks", "The dispute webhook opens a case and merchants upload evidence.", ["The evidence deadline is 7 days"]),
        ("Cache merchant settings in Redis", "60 s TTL, invalidated on update.", ["Avoid cache stampedes with a lock"]),
        ("Fix race in coupon redemption", "Two requests redeemed the same single-use coupon; now an atomic UPDATE ... WHERE redeemed = false.", ["Check-then-act is a race"]),
        ("Load test checkout with Locust", "Found a p99 spike caused by a synchronous Stripe call inside the event loop.", ["Run blocking calls in a thread pool"]),
        ("3-D Secure for European cards", "SCA through the PaymentIntents requires_action flow.", ["The client must handle requires_action"]),
        ("OpenTelemetry tracing", "Spans for database, HTTP and Celery exported to Tempo.", ["Sample 10% in production"]),
        ("Retention job for request logs", "Deletes request logs older than 90 days in batches.", ["Batch deletes avoid long locks"]),
        ("Validate payment amounts", "Pydantic constraints: amount > 0 and a maximum per currency.", ["Reject negative amounts at the edge"]),
        ("Fix duplicate email receipts", "A Celery task retried after an SMTP timeout although the mail had gone out; an idempotency record per receipt now prevents resends.", ["At-least-once delivery needs de-duplication"]),
        ("Scheduled merchant payouts", "Daily payout batch at 02:00 UTC with a bank holiday calendar.", ["Bank holidays differ per country"]),
        ("Move secrets from env files to Vault", "The app reads secrets at startup with AppRole.", ["Rotate database credentials automatically"]),
        ("Soft delete for customers", "A deleted_at column and a default query filter.", ["Unique indexes must be partial: WHERE deleted_at IS NULL"]),
    ],
    "infra": [
        ("Speed up CI with dependency caching", "Cache pip and node_modules keyed on lockfiles; the pipeline went from 25 to 9 minutes.", ["Key caches on the lockfile hash"]),
        ("Terraform state in S3 with DynamoDB locking", "Local state files caused conflicting applies; state now lives in S3 with a lock table.", ["Enable versioning on the state bucket"]),
        ("Horizontal pod autoscaling for the API", "HPA on 70% CPU, between 3 and 20 replicas.", ["Without resource requests the HPA cannot compute utilization"]),
        ("Fix OOMKilled pods in data workers", "The 512Mi memory limit was too low; raised to 2Gi and fixed a leak.", ["Watch container_memory_working_set_bytes"]),
        ("Zero-downtime deploys with readiness probes", "Rolling updates with maxUnavailable 0 and a preStop sleep for connection draining.", ["Readiness gates traffic"]),
        ("TLS certificates with cert-manager", "A Let's Encrypt ClusterIssuer with DNS-01 challenges.", ["Use the staging issuer first to avoid rate limits"]),
        ("Upgrade EKS 1.27 to 1.29", "Removed deprecated APIs such as PodSecurityPolicy, found with pluto.", ["Upgrade one minor version at a time"]),
        ("Prometheus alert on error rate", "Alert when 5xx exceeds 2% for 5 minutes, routed to PagerDuty.", ["Alert on symptoms, not causes"]),
        ("Centralized logging with Loki", "Promtail daemonset; 30-day retention.", ["Avoid high-cardinality labels"]),
        ("Database backups with point-in-time recovery", "RDS automated backups for 14 days; monthly restore drills.", ["A backup never restored is not a backup"]),
        ("External Secrets Operator", "Syncs AWS Secrets Manager entries into Kubernetes secrets.", ["Never commit secrets to git"]),
        ("Reduce Docker image size", "Multi-stage build on a distroless base: 1.2 GB down to 180 MB.", ["Order layers for cache hits"]),
        ("Preview environments per pull request", "A namespace per PR through an ArgoCD ApplicationSet, destroyed on merge.", ["Cap the number of concurrent previews"]),
        ("Migrate CI from Jenkins to GitHub Actions", "Reusable workflows and OIDC to AWS instead of stored keys.", ["Pin actions by commit sha"]),
        ("Fix DNS timeouts inside the cluster", "A conntrack race on UDP; deployed NodeLocal DNSCache.", ["ndots:5 causes extra lookups"]),
        ("Spot instances for batch workloads", "Karpenter provisions spot nodes for batch jobs; 40% cost savings.", ["Handle interruption notices"]),
        ("Network policies to isolate namespaces", "Default deny with allow rules by label.", ["Test policies before enforcing"]),
        ("Blue-green deployment for payments", "Argo Rollouts with automated analysis.", ["Roll back automatically when analysis fails"]),
        ("Terraform module for RDS", "Standard parameter groups and encryption on by default.", ["Use prevent_destroy on production databases"]),
        ("Grafana SLO dashboards", "Latency and availability with error budget burn rate.", ["Multi-window burn-rate alerts"]),
        ("Fix flaky integration tests sharing one database in CI", "Each CI job now gets its own Postgres service container.", ["Isolate test state per job"]),
        ("Container vulnerability scanning with Trivy", "CI fails on critical CVEs.", ["Allowlist entries need an expiry date"]),
        ("Autoscale Celery workers on queue length", "KEDA ScaledObject on the Redis list length.", ["Scale to zero at night"]),
        ("CDN for static assets", "CloudFront with long cache lifetimes and hashed filenames.", ["Invalidate only index.html on deploy"]),
        ("VPN access to staging", "WireGuard with access by SSO group.", ["Revoke keys when people leave"]),
        ("Disaster recovery runbook", "Multi-region standby with a 4 h recovery time objective.", ["Run a game day twice a year"]),
        ("Pod disruption budgets for critical services", "minAvailable 2 for the API and payments.", ["Node drains hang without tuned budgets"]),
        ("Replace Helm charts with kustomize", "Overlays per environment.", ["Keep the base minimal"]),
        ("Fix slow Docker builds in CI", "BuildKit cache mounts and a registry cache.", ["Use --cache-from with an inline cache"]),
        ("Replace IAM access keys with IRSA", "Long-lived keys replaced by IAM roles for service accounts.", ["Audit with access advisor"]),
        ("Alert on failed Kubernetes CronJobs", "Failure alerts from kube-state-metrics.", ["Set startingDeadlineSeconds"]),
        ("Migrate ingress-nginx to Gateway API", "HTTPRoutes per service.", ["Test header-based routing"]),
        ("Terraform drift detection", "A nightly plan in CI posts drift to Slack.", ["Drift usually comes from console clicks"]),
        ("PgBouncer connection pooling", "Transaction pooling cut app connections to Postgres from 800 to 80.", ["Prepared statements break in transaction mode"]),
        ("Fix outage from expired internal certificate", "The internal CA certificate expired; expiry monitoring added.", ["Alert 30 days before expiry"]),
        ("Fix 502s from load balancer idle timeout", "The ALB idle timeout was 60 s and gunicorn keepalive 5 s; keepalive now exceeds the idle timeout.", ["Upstream keepalive must exceed the LB timeout"]),
        ("Self-hosted GitHub runners on Kubernetes", "actions-runner-controller with autoscaling.", ["Use ephemeral runners"]),
        ("Redis high availability with Sentinel", "Sentinel failover tested.", ["Clients must support sentinel discovery"]),
        ("Automated dependency updates with Renovate", "Grouped minor updates, automerge for patches.", ["Schedule update PRs on weekends"]),
        ("Resource quotas per team namespace", "LimitRange defaults for CPU and memory.", ["Without defaults, pods get rejected"]),
        ("Move cron jobs to Argo Workflows", "Retries and DAGs for scheduled jobs.", ["Set ttlStrategy to clean up"]),
        ("Cost per team with Kubecost", "Cost allocation by team label.", ["Enforce the team label with an admission policy"]),
    ],
    "mob": [
        ("Fix Android 14 crash when opening the camera", "The new permission model requires READ_MEDIA_IMAGES.", ["Test on an emulator with the latest API level"]),
        ("Push notifications with Firebase Cloud Messaging", "Token registration and topic subscriptions.", ["Handle token refresh"]),
        ("Reduce app startup time", "Lazy-loaded screens and enabled Hermes; cold start from 3.2 s to 1.4 s.", ["Measure on low-end devices"]),
        ("Offline mode with a local SQLite cache", "WatermelonDB sync with a queue of offline mutations.", ["Resolve conflicts last-write-wins per field"]),
        ("Biometric login with Face ID and fingerprint", "react-native-biometrics with the token in the keychain.", ["Fall back to a PIN"]),
        ("Deep links for password reset", "Universal links and app links with assetlinks.json.", ["Serve the association files with the right content type"]),
        ("Fix iOS build after Xcode 15 upgrade", "Pods needed an update and the deployment target moved to 13.", ["Pin the CocoaPods version in CI"]),
        ("In-app purchases for the premium plan", "StoreKit 2 and Play Billing through RevenueCat.", ["Verify receipts server-side"]),
        ("Dark mode in the mobile app", "useColorScheme and themed styles.", ["The status bar style must change too"]),
        ("Fix list scrolling jank on the transactions screen", "FlatList with getItemLayout and memoized rows now holds 60 fps.", ["Avoid anonymous functions in renderItem"]),
        ("Crash reporting with Crashlytics", "Symbol upload for iOS dSYMs.", ["Upload dSYMs in CI or crashes are unreadable"]),
        ("Automated releases with Fastlane", "Build, sign and upload to TestFlight and the Play internal track.", ["Keep signing keys in CI secrets; use match for iOS"]),
        ("Spanish localization of the mobile app", "i18n-js with Spanish strings.", ["Long strings break buttons"]),
        ("Fix keyboard covering inputs on signup", "KeyboardAvoidingView with padding behavior on iOS.", ["Android needs adjustResize"]),
        ("Upgrade React Native 0.70 to 0.73", "Followed the upgrade helper; new architecture later.", ["Upgrade one version at a time"]),
        ("Screen reader accessibility", "accessibilityLabel on icon buttons; tested with VoiceOver.", ["Test with TalkBack too"]),
        ("Fix token refresh race causing logouts", "Concurrent 401 responses each started a refresh; a single-flight refresh promise fixed it.", ["Queue requests while refreshing"]),
        ("Image caching for avatars", "FastImage with cache control.", ["Invalidate by versioning the URL"]),
        ("End-to-end tests with Detox", "Login and payment flows on simulators in CI.", ["Disable animations in tests"]),
        ("Over-the-air updates with CodePush", "JavaScript bundle updates without a store release.", ["Native changes still need a store release"]),
        ("Reduce APK size", "R8 shrinking and per-ABI splits: 48 MB down to 22 MB.", ["Add keep rules for reflection-based libraries"]),
        ("Fix memory leak on the map screen", "Location listeners were not removed on unmount.", ["Profile with the Android Studio memory profiler"]),
        ("QR code scanning for payments", "vision-camera code scanner.", ["Ask for camera permission just in time"]),
        ("Secure token storage", "Tokens moved from AsyncStorage to Keychain and Keystore.", ["AsyncStorage is not encrypted"]),
        ("Onboarding carousel", "Skippable onboarding with analytics per step.", ["Keep it under four screens"]),
        ("Fix crash when offline at launch", "An unhandled promise rejection in the config fetch; falls back to cached config.", ["Handle errors on every startup fetch"]),
        ("Tablet layout support", "Two-pane layout on iPad.", ["Use useWindowDimensions, not a one-off Dimensions.get"]),
        ("App Store rejection for missing privacy manifest", "Added PrivacyInfo.xcprivacy.", ["Third-party SDKs need manifests too"]),
        ("Background location for delivery tracking", "A foreground service on Android.", ["Lower accuracy when idle to save power"]),
        ("Form validation with react-hook-form and zod", "Schemas shared with the web app.", ["Share validation schemas across platforms"]),
        ("Rate the app prompt", "The in-app review API after the third successful payment.", ["The platform limits how often it shows"]),
        ("Fix wrong currency symbol on some Android devices", "Hermes lacked Intl data for some locales; added a polyfill.", ["Hermes Intl support varies"]),
        ("Remote config feature flags", "Firebase Remote Config with defaults.", ["Fetch on start with a timeout"]),
        ("Pull-to-refresh on the activity feed", "RefreshControl on the feed.", ["Do not refetch while already loading"]),
        ("Target Android SDK 34", "Foreground service types are now required.", ["Google Play deadline is in August"]),
        ("Fix iOS push notifications not arriving", "The APNs certificate had expired; switched to a token-based .p8 key.", ["Token-based APNs keys do not expire"]),
        ("Jailbreak and root detection", "jail-monkey; payments blocked on rooted devices.", ["It is a signal, not security"]),
        ("Card swipe animations with Reanimated", "Animations run on the UI thread.", ["Worklets cannot call JS functions directly"]),
        ("Replace polling with push updates", "The app polled every 10 s; updates are now pushed.", ["Background fetch is throttled by the OS"]),
        ("Bottom tab navigation redesign", "react-navigation v6 tabs.", ["Keep tab state when switching"]),
        ("Snapshot tests with Jest", "react-test-renderer snapshots for components.", ["Keep snapshots small"]),
        ("Android back button in modals", "BackHandler closes the modal.", ["Return true to prevent the default"]),
    ],
    "data": [
        ("Fix daily sales DAG timeout", "The load task exceeded 2 h; partitioned by region and parallelized.", ["Set execution_timeout per task"]),
        ("Incremental dbt models for events", "is_incremental with merge on event_id; the run went from 50 to 6 minutes.", ["unique_key avoids duplicates"]),
        ("Deduplicate Kafka events", "At-least-once delivery produced duplicates; dedup by event_id in a window.", ["Make sinks idempotent"]),
        ("Fix Spark OOM on skewed join", "Salted the skewed key and enabled AQE skew join handling.", ["Check the partition size distribution"]),
        ("Data quality checks with Great Expectations", "Null and range checks on orders.", ["Fail the DAG only on critical expectations"]),
        ("Backfill three years of historical orders", "Chunked by month with idempotent partition overwrites.", ["Backfills must be re-runnable"]),
        ("Migrate the warehouse from Redshift to Snowflake", "Unload to S3, COPY INTO, and rewrite dialect differences.", ["QUALIFY simplifies window filters"]),
        ("Mask PII in analytics tables", "Dynamic masking policies on email columns.", ["Mask at the source where possible"]),
        ("Fix timezone mismatch in the daily revenue report", "Events are stored in UTC but the report expected local time; converted at aggregation.", ["Keep storage in UTC"]),
        ("Schema evolution for Avro events", "Schema registry with backward compatibility.", ["Add fields only with defaults"]),
        ("Slowly changing dimension for customers", "SCD type 2 with dbt snapshots.", ["Use the check strategy when updated_at is missing"]),
        ("Reduce Snowflake costs", "Auto-suspend warehouses after 60 s and clustering keys.", ["Tag queries to attribute cost"]),
        ("Upgrade Airflow 1.10 to 2.7", "TaskFlow API and the new scheduler.", ["Run the upgrade check first"]),
        ("Streaming fraud features with Flink", "Windowed aggregates written to Redis.", ["Watermarks handle late events"]),
        ("Sensors blocking Airflow worker slots", "Switched to deferrable operators.", ["Reschedule mode frees slots"]),
        ("Reverse ETL to Salesforce", "Account scores synced with Hightouch.", ["Respect Salesforce API rate limits"]),
        ("Unit tests for dbt models", "dbt unit tests with seeds.", ["Test edge cases such as nulls"]),
        ("Compact small Parquet files", "A daily compaction job fixed the small files problem.", ["Target 256 MB files"]),
        ("Lineage with OpenLineage and Marquez", "Dataset and job lineage collected from Airflow.", ["Column-level lineage helps impact analysis"]),
        ("Fix duplicate rows in the orders fact table", "A join fanned out over multiple shipments; aggregate shipments before joining.", ["Check the grain before joining"]),
        ("Feature store with Feast", "Offline store in Snowflake, online store in Redis.", ["Point-in-time correct joins"]),
        ("Alert on late data arrival", "dbt source freshness checks.", ["Alert the owners, not a shared channel"]),
        ("GDPR deletion requests in the warehouse", "A job deletes a customer's rows across tables by customer id.", ["Keep a registry of PII columns"]),
        ("Retry transient S3 errors in ingestion", "boto3 retries in adaptive mode.", ["SlowDown errors need backoff"]),
        ("Convert CSV ingestion to Parquet", "Five times smaller and typed.", ["Enforce the schema on read"]),
        ("Airflow connections in a secrets backend", "AWS Secrets Manager backend for connections.", ["Cache lookups to avoid throttling"]),
        ("Speed up slow Looker dashboard queries", "Aggregate tables (PDTs) with aggregate awareness.", ["Pre-aggregate the common explores"]),
        ("Exactly-once Kafka consumer", "Offsets committed in the same transaction as the sink write.", ["Enable idempotence on the producer"]),
        ("Data catalog with DataHub", "Ingested dbt and Snowflake metadata.", ["Ownership metadata drives adoption"]),
        ("Partition pruning on the events table", "Partitioned by event_date; queries must filter on it.", ["Functions on the partition column disable pruning"]),
        ("Fix DAG not triggering on schedule", "A dynamic start_date (datetime.now) broke scheduling.", ["Use a static start_date"]),
        ("Anomaly detection on daily metrics", "Seasonal decomposition with alerts on z-score above 3.", ["Holidays cause false positives"]),
        ("CDC from Postgres with Debezium", "Logical replication slot monitored for lag.", ["A stuck replication slot fills the disk"]),
        ("Data contracts for event producers", "JSON schemas in the repo checked in CI.", ["Breaking changes need a version bump"]),
        ("Upgrade Spark 3.1 to 3.5", "ANSI mode behaviour differences.", ["Set spark.sql.ansi.enabled explicitly"]),
        ("Dimensional model for subscriptions", "An MRR fact table.", ["Define churn precisely"]),
        ("Fix null handling in revenue aggregation", "SUM ignored nulls and hid missing currency conversions.", ["Coalesce explicitly and test for nulls"]),
        ("Run dbt from Airflow with Cosmos", "One Airflow task per dbt model.", ["Too many tasks slow the scheduler"]),
        ("Sample large tables for development", "The dev target uses a 1% sample.", ["Sample deterministically by hash"]),
        ("Turn notebooks into production pipelines", "Logic moved from notebooks into tested modules.", ["Notebooks are not deployable"]),
        ("Pipeline SLA dashboard", "DAG durations and failures in one dashboard.", ["Track SLA misses"]),
        ("Default encryption for S3 buckets", "SSE-KMS default encryption on data buckets.", ["Bucket policies deny unencrypted puts"]),
    ],
}
# fmt: on

MEMORIES: list[Memory] = [
    Memory(id=f"{prefix}-{i:02d}", repo=REPOS[prefix], title=t, summary=s, learnings=tuple(lrn))
    for prefix, rows in _RAW.items()
    for i, (t, s, lrn) in enumerate(rows, 1)
]

# fmt: off
_Q: list[tuple[str, str | None, list[str], str]] = [
    # web
    ("The admin dashboard takes forever to show up, make it snappier", "web", ["web-01"], "paraphrase"),
    ("Users get bounced back to the sign-in screen after authenticating with Google", "web", ["web-02"], "paraphrase"),
    ("Support a night theme for the UI", "web", ["web-03"], "paraphrase"),
    ("Birthdays appear one day early for customers in America", "web", ["web-05"], "paraphrase"),
    ("Translate the interface into other languages", "web", ["web-07"], "paraphrase"),
    ("Browser tab uses more and more RAM while watching live orders", "web", ["web-09"], "paraphrase"),
    ("Make the forms usable with a screen reader", "web", ["web-10"], "paraphrase"),
    ("The checkout end-to-end test fails randomly", "web", ["web-12"], "lexical"),
    ("Restrict admin screens to users with the right permissions", "web", ["web-14"], "paraphrase"),
    ("The site looks broken on small phones", "web", ["web-15"], "paraphrase"),
    ("Typeahead suggestions show results for an old query", "web", ["web-18"], "paraphrase"),
    ("Product photos load slowly and hurt largest contentful paint", "web", ["web-23"], "lexical"),
    ("Customers get charged twice when they click pay repeatedly", "web", ["web-24"], "paraphrase"),
    ("Switch our build tooling away from Create React App", "web", ["web-11"], "lexical"),
    ("Component re-renders endlessly when filters change", "web", ["web-27"], "lexical"),
    ("The app should keep working without an internet connection", "web", ["web-30"], "paraphrase"),
    ("Sanitize user-provided markdown to prevent script injection", "web", ["web-37"], "paraphrase"),
    ("Previous user's data still visible after signing out", "web", ["web-41"], "paraphrase"),
    ("The initial JavaScript download is too big", "web", ["web-40", "web-08"], "paraphrase"),
    ("Upgrade the Node version used to build the frontend", "web", ["web-34"], "lexical"),
    # api
    ("A client retrying a request must not create a second charge", "api", ["api-01"], "paraphrase"),
    ("The invoice listing endpoint issues hundreds of SQL queries", "api", ["api-02"], "paraphrase"),
    ("Check that incoming Stripe events are authentic", "api", ["api-04"], "paraphrase"),
    ("Throttle clients that send too many requests", "api", ["api-05"], "paraphrase"),
    ("Refund totals are off by a cent", "api", ["api-06"], "paraphrase"),
    ("Two simultaneous transfers lock up the database", "api", ["api-09"], "paraphrase"),
    ("Rotate the signing keys for access tokens", "api", ["api-10"], "paraphrase"),
    ("Settlement numbers are wrong for merchants in other time zones", "api", ["api-14"], "lexical"),
    ("Tests take too long to run locally and in CI", "api", ["api-17"], "paraphrase"),
    ("Protect customers' personal data stored in the database", "api", ["api-21"], "paraphrase"),
    ("The service runs out of database connections when traffic spikes", "api", ["api-22"], "paraphrase"),
    ("Rename a column without taking the service down", "api", ["api-25"], "lexical"),
    ("Looking up customers by part of their email address is slow", "api", ["api-27"], "paraphrase"),
    ("The same discount code was used twice", "api", ["api-33"], "paraphrase"),
    ("Customers received duplicate receipt emails", "api", ["api-39"], "lexical"),
    ("Strong customer authentication for EU card payments", "api", ["api-35"], "paraphrase"),
    ("Distributed tracing across our services", "api", ["api-36"], "paraphrase"),
    ("Keep deleted customers recoverable", "api", ["api-42"], "paraphrase"),
    # infra
    ("Pipeline builds are too slow, reuse dependencies between runs", "infra", ["infra-01", "infra-29"], "paraphrase"),
    ("Two engineers ran terraform apply at once and corrupted the state", "infra", ["infra-02"], "lexical"),
    ("Workers keep getting killed for using too much memory", "infra", ["infra-04"], "paraphrase"),
    ("Users see errors while a new version is rolled out", "infra", ["infra-05", "infra-18"], "paraphrase"),
    ("HTTPS certificates should renew automatically", "infra", ["infra-06"], "paraphrase"),
    ("Our container images are huge", "infra", ["infra-12"], "paraphrase"),
    ("Spin up a temporary environment for every PR", "infra", ["infra-13"], "paraphrase"),
    ("Intermittent name lookup failures inside the cluster", "infra", ["infra-15"], "paraphrase"),
    ("Cut the cloud bill for batch jobs", "infra", ["infra-16"], "paraphrase"),
    ("Random 502 bad gateway errors from the load balancer", "infra", ["infra-36"], "lexical"),
    ("Too many connections from the application to Postgres", "infra", ["infra-34"], "paraphrase"),
    ("Outage because a certificate expired", "infra", ["infra-35"], "lexical"),
    # mobile
    ("Android app crashes when the user takes a photo", "mob", ["mob-01"], "paraphrase"),
    ("The app takes too long to open", "mob", ["mob-03"], "paraphrase"),
    ("Let users unlock the app with their face or finger", "mob", ["mob-05"], "paraphrase"),
    ("Scrolling the list of payments stutters", "mob", ["mob-10"], "paraphrase"),
    ("Users are randomly logged out when several requests fail with 401", "mob", ["mob-17"], "lexical"),
    ("The on-screen keyboard hides the text field", "mob", ["mob-14"], "paraphrase"),
    ("The Android download is too large", "mob", ["mob-21"], "paraphrase"),
    ("Apple rejected our build in review", "mob", ["mob-28"], "paraphrase"),
    ("The app drains the phone battery", "mob", ["mob-39", "mob-29"], "paraphrase"),
    ("Store auth tokens safely on the device", "mob", ["mob-24"], "paraphrase"),
    # data
    ("Daily sales DAG runs past its time limit", "data", ["data-01"], "lexical"),
    ("Spark executors die because one key has most of the rows", "data", ["data-04"], "paraphrase"),
    ("Reload old orders for the past years", "data", ["data-06"], "paraphrase"),
    ("Hide customer emails from analysts", "data", ["data-08"], "paraphrase"),
    ("Warehouse spend is too high", "data", ["data-12"], "paraphrase"),
    ("Fact table has repeated orders after joining shipments", "data", ["data-20"], "lexical"),
    ("Erase a user's data on request to comply with privacy law", "data", ["data-23"], "paraphrase"),
    ("Too many tiny files in the data lake", "data", ["data-18"], "paraphrase"),
    ("The pipeline did not start at its scheduled time", "data", ["data-31"], "paraphrase"),
    ("Replication slot filled the disk", "data", ["data-33"], "lexical"),
    # across repos
    ("A customer was charged twice", None, ["web-24", "api-01"], "paraphrase"),
    ("Make the reporting dashboard load faster", None, ["web-01", "data-27"], "lexical"),
    ("Dates are off by one day because of time zones", None, ["web-05", "api-14", "data-09"], "lexical"),
    ("Stream a big CSV download without running out of memory", "web", ["api-19", "web-06"], "lexical"),
    ("Flaky tests caused by shared database state", "api", ["infra-21"], "lexical"),
]
# fmt: on

QUERIES: list[Query] = [Query(text=t, repo=REPOS[r] if r else None, expected=tuple(e), style=s) for t, r, e, s in _Q]

# ------------------------------------------------------------------ filler for scale

_CHORES = [
    "Bump {pkg} from {a} to {b}",
    "Fix lint warnings in {mod}",
    "Rename variables in {mod} for clarity",
    "Add docstrings to {mod}",
    "Update the README section on {topic}",
    "Remove dead code from {mod}",
    "Add unit tests for {mod}",
    "Refactor {mod} into smaller functions",
    "Update the changelog for release {a}",
    "Fix typo in {topic} documentation",
    "Tidy imports in {mod}",
    "Add type hints to {mod}",
]
_PKGS = [
    "lodash",
    "axios",
    "requests",
    "boto3",
    "pydantic",
    "eslint",
    "prettier",
    "pytest",
    "black",
    "urllib3",
    "jest",
    "webpack",
    "babel",
    "numpy",
    "pandas",
    "django",
    "flask",
    "express",
    "react-router",
    "typescript",
]
_MODS = {
    "web": [
        "src/components/Table",
        "src/hooks/useOrders",
        "src/pages/Settings",
        "src/utils/format",
        "src/api/client",
        "src/components/Modal",
        "src/pages/Reports",
        "src/store/session",
        "src/components/Sidebar",
        "src/theme",
    ],
    "api": [
        "app/routers/payments",
        "app/models/invoice",
        "app/services/ledger",
        "app/workers/tasks",
        "app/core/config",
        "app/routers/customers",
        "app/services/fx",
        "app/schemas/refund",
        "app/db/session",
        "app/utils/money",
    ],
    "infra": [
        "modules/vpc",
        "modules/eks",
        "charts/api",
        "workflows/deploy.yml",
        "modules/iam",
        "charts/worker",
        "modules/s3",
        "scripts/bootstrap.sh",
        "modules/rds",
        "policies/opa",
    ],
    "mob": [
        "src/screens/Home",
        "src/screens/Wallet",
        "src/navigation/root",
        "src/services/api",
        "src/components/Card",
        "ios/Podfile",
        "android/app/build.gradle",
        "src/hooks/useAuth",
        "src/utils/i18n",
        "src/screens/Profile",
    ],
    "data": [
        "dags/sales_daily",
        "models/marts/orders",
        "models/staging/events",
        "jobs/spark/sessions",
        "dags/exports",
        "models/marts/customers",
        "jobs/spark/aggregates",
        "macros/dates",
        "dags/maintenance",
        "tests/schema",
    ],
}
_TOPICS = [
    "local setup",
    "deployment",
    "configuration",
    "contributing",
    "architecture",
    "testing",
    "release process",
    "code style",
    "environment variables",
    "troubleshooting",
]


def distractors(n: int, seed: int = 7) -> list[Memory]:
    """`n` filler memories of routine chores, spread over the repos, reproducible by seed."""
    rng = random.Random(seed)
    out = []
    prefixes = list(REPOS)
    for i in range(n):
        prefix = prefixes[i % len(prefixes)]
        mod = rng.choice(_MODS[prefix])
        fill = {
            "pkg": rng.choice(_PKGS),
            "a": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            "b": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
            "mod": mod,
            "topic": rng.choice(_TOPICS),
        }
        title = rng.choice(_CHORES).format(**fill)
        summary = f"Routine maintenance in {mod}: {title.lower()}. No behaviour change; CI green (run {i})."
        learn = rng.choice(
            ["Small PRs review faster", "Run the formatter before committing", "Keep chores separate from features"]
        )
        out.append(Memory(id=f"filler-{i:05d}", repo=REPOS[prefix], title=title, summary=summary, learnings=(learn,)))
    return out


def check() -> None:
    """The set is well formed: unique ids, enough memories, repos and queries, expected ids exist."""
    ids = [m.id for m in MEMORIES]
    assert len(ids) == len(set(ids)), "duplicate memory ids"
    assert len(MEMORIES) >= 200 and len({m.repo for m in MEMORIES}) >= 4 and len(QUERIES) >= 50
    known = set(ids)
    for q in QUERIES:
        assert q.expected and set(q.expected) <= known, q


if __name__ == "__main__":
    check()
    print(
        f"{len(MEMORIES)} memories in {len({m.repo for m in MEMORIES})} repos, {len(QUERIES)} queries "
        f"({sum(q.style == 'paraphrase' for q in QUERIES)} paraphrases)"
    )
