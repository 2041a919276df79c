# 011_citus.pl -- phi3 on Citus: a coordinator and two workers, every node
# computing the rows of its own shards.
#
# Three clusters on this machine (one socket directory, three ports), Citus
# and phi3 preloaded on each, the same model path on each; a distributed
# table reports (4 shards, 2 per worker) and a plain copy reports_local on
# the coordinator for the single-node results.  Where the work ran is read
# from each node's own phi3_stats (not from timing):
#   1. SELECT phi3_summarize(body) FROM reports is pushed down: each worker
#      summarizes exactly the rows of its shards, the coordinator none; the
#      results equal the single-node ones (greedy); a WHERE on the
#      distribution column runs on the one node that holds the row; so does
#      the SELECT of an INSERT ... SELECT into a distributed table;
#   2. phi3_enrich fills reports on the workers (per node: the NULL rows of
#      its shards), as the caller, equal to phi3_enrich on the plain copy;
#      a second run fills nothing; two concurrent calls fill each row once;
#      it refuses to run in a transaction that has used distributed tables
#      (its shards commit on their own); a role without UPDATE is refused
#      by the workers, named with node and shard; a node without the model
#      fails with node and shard named, the rows of the shards done before
#      stay, and a rerun after the fix fills exactly the rest; a cancel on
#      the coordinator (statement_timeout) cancels the workers'
#      generations; odd schema, table and column names and a partitioned
#      distributed table work;
#   3. a phi3_fill trigger on reports (citus.enable_unsafe_triggers) fills
#      inserted rows on the node that stores them, with the single-node
#      values; a phi3_fill_async trigger on a distributed table owned by a
#      plain role queues each row on the node that stores it (an INSERT on
#      both workers, committed by Citus with PREPARE TRANSACTION / COMMIT
#      PREPARED, and a one-node UPDATE), and that node's worker fills it
#      once (per-node phi3_stats and phi3_queue_status; the coordinator's
#      queue has none of them) with the single-node values; waiting from
#      the coordinator through run_command_on_workers, and the README's
#      cluster-wide phi3_queue_status per distributed table; an owner without
#      UPDATE cannot have the row written (the item fails on its node, and
#      phi3_async_retry through run_command_on_workers fills it once the
#      right is back); phi3_async_purge in a worker node's own session
#      (where Citus hides the shards from pg_class) purges the owner's
#      items; DROP TABLE leaves no item on the workers;
#   4. settings set cluster-wide with ALTER DATABASE on the coordinator
#      reach the workers; a node without the model or without the extension
#      is an error naming the node.
# Citus must be installed (scripts/install-citus.sh); without it the test
# fails, saying so.  PHI3_TAP_CITUS_PORT=N puts the nodes on ports N,
# N+1, N+2 (default: free ports).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use Phi3TAP;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
unless (-f "$pkglibdir/citus.so")
{
	my $bindir = `pg_config --bindir`;
	chomp $bindir;
	fail("Citus is installed in $pkglibdir (citus.so is missing: run "
		  . "PG_CONFIG=$bindir/pg_config scripts/install-citus.sh)");
	done_testing();
	exit;
}

my $tiny = model_path('tiny-a');
my $base = $ENV{PHI3_TAP_CITUS_PORT};
my @nodes;
for my $i (0 .. 2)
{
	my $node = PostgreSQL::Test::Cluster->new(('coordinator', 'worker1', 'worker2')[$i],
		defined $base && $base ne '' ? (port => $base + $i) : ());
	$node->init;
	$node->append_conf('postgresql.conf', join("\n",
		"shared_preload_libraries = 'citus,phi3'",
		"phi3.model = '$tiny'",
		'phi3.threads = 1',
		# idle background workers leave their database at once: a row
		# queued by a transaction is filled only if its commit (or COMMIT
		# PREPARED) brings a worker back
		"phi3.async_idle_timeout = '1s'",
		'phi3.async_max_attempts = 1',
		'max_connections = 40',
		'shared_buffers = 16MB',
		# the nodes reach each other through the shared socket directory
		"citus.local_hostname = '" . $node->host . "'"));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');
	push @nodes, $node;
}
my ($coord, $w1, $w2) = @nodes;
my $host = $coord->host;

# the cluster, and phi3 created once on the coordinator: Citus creates it on
# the workers too
$coord->safe_psql('postgres', sprintf(q{
	SELECT citus_set_coordinator_host('%s', %d);
	SELECT citus_add_node('%s', %d);
	SELECT citus_add_node('%s', %d);
	CREATE EXTENSION phi3;
	ALTER DATABASE postgres SET phi3.max_tokens = 6;},
	$host, $coord->port, $host, $w1->port, $host, $w2->port));
is( $coord->safe_psql('postgres',
		q{SELECT string_agg(result, ',' ORDER BY nodeport) FROM run_command_on_workers(
		  $$SELECT extversion FROM pg_extension WHERE extname = 'phi3'$$)}),
	'1.0,1.0', 'CREATE EXTENSION phi3 on the coordinator created it on both workers');
is($_->safe_psql('postgres', 'SHOW phi3.max_tokens'), '6',
	'ALTER DATABASE ... SET phi3.max_tokens on the coordinator reached ' . $_->name)
  for @nodes;

# per-node counters: rows of one function on one node since the last reset
sub node_rows
{
	my ($node, $function) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(sum(rows), 0) FROM phi3_stats WHERE function = '$function'");
}
sub reset_stats { $_->safe_psql('postgres', 'SELECT phi3_stats_reset()') for @nodes; }

# the expected split: rows (matching a condition) per node, from the shard
# each row hashes to and the node that holds that shard
sub rows_per_node
{
	my ($cond, $table) = @_;
	$table //= 'reports';
	my %n = map { $_->port => 0 } @nodes;
	my $out = $coord->safe_psql('postgres', qq{
		SELECT n.nodeport, count(*) FROM $table r
		JOIN pg_dist_placement p ON p.shardid = get_shard_id_for_distribution_column('$table', r.id)
		JOIN pg_dist_node n ON n.groupid = p.groupid WHERE $cond GROUP BY 1});
	for (split /\n/, $out)
	{
		my ($port, $count) = split /\|/;
		$n{$port} = $count;
	}
	return \%n;
}

my $rows_sql = q{SELECT i, 'Report ' || i || ': sales in region ' || (i % 5) || ' rose by ' || (i * 7) || ' percent.'
                 FROM generate_series(1, 12) i};
$coord->safe_psql('postgres', qq{
	CREATE TABLE reports (id int PRIMARY KEY, body text, summary text);
	SET citus.shard_count = 4;
	SELECT create_distributed_table('reports', 'id');
	INSERT INTO reports (id, body) $rows_sql;
	CREATE TABLE reports_local (id int PRIMARY KEY, body text, summary text);
	INSERT INTO reports_local (id, body) $rows_sql;
});
my $split = rows_per_node('true');
ok($split->{ $w1->port } > 0 && $split->{ $w2->port } > 0 && $split->{ $coord->port } == 0,
	"the 12 rows are on both workers ($split->{$w1->port} + $split->{$w2->port})");

# ---- 1. queries: pushed down, each worker its own rows, single-node results
my $local = $coord->safe_psql('postgres',
	'SELECT id, phi3_summarize(body, 5) FROM reports_local ORDER BY id');
reset_stats();
my $plan = $coord->safe_psql('postgres',
	'EXPLAIN (VERBOSE, COSTS OFF) SELECT id, phi3_summarize(body, 5) FROM reports');
like($plan, qr/Task Count: 4.*Query: SELECT id, public\.phi3_summarize\(body, 5/s,
	'the plan sends phi3_summarize to the shards');
my $dist = $coord->safe_psql('postgres',
	'SELECT id, phi3_summarize(body, 5) FROM reports ORDER BY id');
is($dist, $local, 'the distributed query gives the single-node summaries');
is(node_rows($coord, 'phi3_summarize'), 0, 'the coordinator summarized nothing');
is(node_rows($w1, 'phi3_summarize'), $split->{ $w1->port }, 'worker1 summarized the rows of its shards');
is(node_rows($w2, 'phi3_summarize'), $split->{ $w2->port }, 'worker2 summarized the rows of its shards');
note('per-node phi3_summarize rows: coordinator 0, worker1 ' . node_rows($w1, 'phi3_summarize')
	  . ', worker2 ' . node_rows($w2, 'phi3_summarize'));

my $one = rows_per_node('r.id = 7');
my $local7 = $coord->safe_psql('postgres', 'SELECT phi3_summarize(body, 5) FROM reports_local WHERE id = 7');
reset_stats();
is($coord->safe_psql('postgres', 'SELECT phi3_summarize(body, 5) FROM reports WHERE id = 7'),
	$local7, 'a router query (WHERE id = 7) gives the single-node summary');
is(join(',', map { node_rows($_, 'phi3_summarize') } @nodes),
	join(',', map { $one->{ $_->port } } @nodes), 'and ran on the one node that holds row 7');

# INSERT ... SELECT: Citus pulls the rows through the coordinator, but the
# SELECT, with phi3_summarize, still runs on the shards
$coord->safe_psql('postgres', q{
	CREATE TABLE sums (id int PRIMARY KEY, s text);
	SELECT create_distributed_table('sums', 'id', colocate_with => 'reports')});
reset_stats();
$coord->safe_psql('postgres', 'INSERT INTO sums SELECT id, phi3_summarize(body, 5) FROM reports');
is(join(',', map { node_rows($_, 'phi3_summarize') } @nodes),
	join(',', map { $split->{ $_->port } } @nodes),
	'INSERT ... SELECT phi3_summarize(...) FROM reports summarizes on the workers too');
is($coord->safe_psql('postgres', 'SELECT id, s FROM sums ORDER BY id'), $local,
	'with the single-node summaries');

# ---- 2. phi3_enrich: on the workers, as the caller, once per row
$coord->safe_psql('postgres', q{
	UPDATE reports SET summary = 'given' WHERE id = 1;
	UPDATE reports_local SET summary = 'given' WHERE id = 1;
	CREATE ROLE analyst LOGIN;
	GRANT SELECT, UPDATE ON reports TO analyst;
	CREATE ROLE reader LOGIN;
	GRANT SELECT ON reports TO reader;
});
my $template = q{'Summarize in one line: {body}'};
my $expect = rows_per_node('r.summary IS NULL');
is($coord->safe_psql('postgres', "SELECT phi3_enrich('reports_local', 'summary', $template)"),
	'11', 'phi3_enrich on the plain copy (one UPDATE on the coordinator)');
reset_stats();
is( $coord->safe_psql('postgres', "SELECT phi3_enrich('reports', 'summary', $template)",
		extra_params => [ '-U', 'analyst' ]),
	'11', 'phi3_enrich as a non-superuser fills the 11 NULL rows of the distributed table');
is(node_rows($coord, 'phi3_generate'), 0, 'the coordinator generated nothing');
is(node_rows($w1, 'phi3_generate'), $expect->{ $w1->port }, 'worker1 filled its NULL rows');
is(node_rows($w2, 'phi3_generate'), $expect->{ $w2->port }, 'worker2 filled its NULL rows');
note('per-node phi3_generate rows of phi3_enrich: coordinator 0, worker1 '
	  . node_rows($w1, 'phi3_generate') . ', worker2 ' . node_rows($w2, 'phi3_generate'));
my $same = q{SELECT count(*) FILTER (WHERE d.summary IS NOT DISTINCT FROM l.summary) || '/' || count(*)
             FROM reports d JOIN reports_local l USING (id)};
is($coord->safe_psql('postgres', $same), '12/12', 'the distributed values equal the single-node ones');
ok($coord->safe_psql('postgres', "SELECT count(DISTINCT summary) FROM reports WHERE summary <> ''") > 1,
	'and they are texts of their own (not all one value)');
is($coord->safe_psql('postgres', "SELECT summary FROM reports WHERE id = 1"), 'given',
	'a value already there is kept');
reset_stats();
is($coord->safe_psql('postgres', "SELECT phi3_enrich('reports', 'summary', $template)"),
	'0', 'a second run fills nothing');
is(join(',', map { node_rows($_, 'phi3_generate') } @nodes), '0,0,0', 'and generates nothing');

# as the caller: a role without UPDATE is refused on the worker
$coord->safe_psql('postgres', 'UPDATE reports SET summary = NULL WHERE id = 2');
my ($ret, $out, $err) = psql_error($coord,
	"SET ROLE reader; SELECT phi3_enrich('reports', 'summary', $template)");
like($err, qr/phi3_enrich failed on shard \d+ of "reports" on node \Q$host\E:\d+.*permission denied for table reports_\d+/s,
	'a role without UPDATE privilege is refused by the worker, node and shard named');

# not in a transaction that has done distributed work (its shards would
# wait for that transaction's locks, and its rollback would not undo them)
($ret, $out, $err) = psql_error($coord, "BEGIN; UPDATE reports SET summary = NULL WHERE id = 2;
	SELECT phi3_enrich('reports', 'summary', $template)");
like($err, qr/25001: phi3_enrich cannot fill distributed table "reports" in a transaction that has already used distributed tables/,
	'phi3_enrich refuses to run in a transaction that has used distributed tables');
is($coord->safe_psql('postgres', "BEGIN; SET LOCAL phi3.temperature = 0;
	SELECT phi3_enrich('reports', 'summary', $template); COMMIT;"),
	'1', 'a transaction of its own with SET LOCAL is fine');

# two callers at once: each row is written once (the UPDATE of the one
# that comes second skips the rows the first has filled)
$coord->safe_psql('postgres', 'UPDATE reports SET summary = NULL');
my @callers = map { Phi3TAP::Session->new($coord) } 1 .. 2;
$_->send("SELECT phi3_enrich('reports', 'summary', $template, max_tokens => 40)") for @callers;
my @counts = map { $_->wait_result(120)->{stdout} } @callers;
$_->quit for @callers;
is(($counts[0] // 0) + ($counts[1] // 0), 12, "two concurrent calls fill the 12 rows once between them (@counts)");
is($coord->safe_psql('postgres', 'SELECT count(summary) FROM reports'), '12', 'every row is filled');

# a node without the model: error naming node and shard; earlier shards stay
$w2->safe_psql('postgres', q{ALTER SYSTEM SET phi3.model = ''; SELECT pg_reload_conf()});
($ret, $out, $err) = psql_error($coord, 'SELECT id, phi3_summarize(body, 5) FROM reports');
like($err, qr/phi3\.model is not set.*while executing command on \Q$host\E:\Q@{[$w2->port]}\E/s,
	'a query where worker2 has no model: the error names worker2');
$coord->safe_psql('postgres', 'UPDATE reports SET summary = NULL');
($ret, $out, $err) = psql_error($coord, "SELECT phi3_enrich('reports', 'summary', $template)");
like($err, qr/38000: phi3_enrich failed on shard \d+ of "reports" on node \Q$host\E:\Q@{[$w2->port]}\E.*The node reported: ERROR:  phi3\.model is not set.*(\d+) rows were filled before the error/s,
	'phi3_enrich where worker2 has no model: the error names worker2 and the shard');
my ($reported) = $err =~ /(\d+) rows were filled before the error/;
my $filled = $coord->safe_psql('postgres', 'SELECT count(summary) FROM reports');
is($filled, $reported // -1, "the rows of the shards done before stay filled ($filled)");
$w2->safe_psql('postgres', q{ALTER SYSTEM RESET phi3.model; SELECT pg_reload_conf()});
is($coord->safe_psql('postgres', "SELECT phi3_enrich('reports', 'summary', $template)"),
	12 - $filled, 'after the fix a rerun fills exactly the rest');
is($coord->safe_psql('postgres', $same), '11/12', 'with the single-node values (row 1 is NULL here, "given" there)');

# a cancelled phi3_enrich cancels the generations on the workers: Citus
# cancels the statements of the connections it closes; each worker counts a
# cancel, and nothing is committed
$coord->safe_psql('postgres', q{
	ALTER DATABASE postgres SET phi3.context_size = 4096;
	UPDATE reports SET summary = NULL});
reset_stats();
($ret, $out, $err) = psql_error($coord, q{SET statement_timeout = '1s';
	SELECT phi3_enrich('reports', 'summary', 'Tell a long story about {body}', max_tokens => 4000)});
like($err, qr/57014: canceling statement due to statement timeout/, 'phi3_enrich ended by statement_timeout');
my $cancels = '';
for (1 .. 300)
{
	$cancels = join(',', map { $_->safe_psql('postgres',
		q{SELECT coalesce(sum(cancels), 0) || '/' || coalesce(sum(calls), 0) FROM phi3_stats}) } ($w1, $w2));
	last if $cancels eq '1/1,1/1';
	Time::HiRes::sleep(0.1);
}
is($cancels, '1/1,1/1', 'each worker cancelled the one generation it had started (cancels/calls)');
is($coord->safe_psql('postgres', 'SELECT count(summary) FROM reports'), '0', 'and nothing was committed');
my $running = '';
for (1 .. 300)
{
	$running = join(',', map { $_->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'WITH filled AS%'}) } ($w1, $w2));
	last if $running eq '0,0';
	Time::HiRes::sleep(0.1);
}
is($running, '0,0', 'no worker is still running a shard of it');

# a node without the extension: the error names it
$w2->safe_psql('postgres', 'SET citus.enable_ddl_propagation = off; DROP EXTENSION phi3');
($ret, $out, $err) = psql_error($coord, 'SELECT id, phi3_summarize(body, 5) FROM reports');
like($err, qr/function public\.phi3_summarize\(text, integer, text\) does not exist.*while executing command on \Q$host\E:\Q@{[$w2->port]}\E/s,
	'a query where worker2 lacks the extension: the error names worker2');
$w2->safe_psql('postgres', 'SET citus.enable_ddl_propagation = off; CREATE EXTENSION phi3');

# odd names pass through the shards' names quoted; a partitioned
# distributed table is filled through its partitions' shards
$coord->safe_psql('postgres', q{
	SET citus.shard_count = 2;
	CREATE SCHEMA "My ""Schema""";
	CREATE TABLE "My ""Schema"""."odd; table" ("the id" int PRIMARY KEY, "the body" text, "the sum" text);
	SELECT create_distributed_table('"My ""Schema"""."odd; table"', 'the id');
	INSERT INTO "My ""Schema"""."odd; table" SELECT i, 'odd ' || i, NULL FROM generate_series(1, 4) i;
	CREATE TABLE events (id int, day date, body text, summary text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
	CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
	CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
	SELECT create_distributed_table('events', 'id');
	INSERT INTO events SELECT i, date '2026-01-01' + i * 60, 'event ' || i, NULL FROM generate_series(1, 5) i;
});
is( $coord->safe_psql('postgres',
		q{SELECT phi3_enrich('"My ""Schema"""."odd; table"', 'the sum', 'About {the body}')}),
	'4', 'a distributed table with odd schema, table and column names');
is( $coord->safe_psql('postgres',
		q{SELECT count(*) FILTER (WHERE "the sum" = btrim(phi3_generate('About ' || "the body"), E' \t\n\r\f'))
		  FROM "My ""Schema"""."odd; table"}),
	'4', 'with the values phi3_generate gives for the same prompts');
is($coord->safe_psql('postgres', q{SELECT phi3_enrich('events', 'summary', 'About {body} on {day}')}),
	'5', 'a partitioned distributed table: every partition filled');
is($coord->safe_psql('postgres', q{SELECT count(summary) || '/' || count(*) FROM events}), '5/5',
	'no row left NULL');

# ---- 3. the trigger: rows filled on the node that stores them
($ret, $out, $err) = psql_error($coord, q{
	CREATE TRIGGER reports_fill BEFORE INSERT OR UPDATE ON reports FOR EACH ROW
	EXECUTE FUNCTION phi3_fill('summary', 'Summarize: {body}')});
like($err, qr/triggers are not supported on distributed tables/,
	'without citus.enable_unsafe_triggers Citus refuses the trigger');
my $new_rows = q{SELECT i, 'New report ' || i || ' about hiring.' FROM generate_series(101, 106) i};
$coord->safe_psql('postgres', qq{
	SET citus.enable_unsafe_triggers = on;
	CREATE TRIGGER reports_fill BEFORE INSERT OR UPDATE ON reports FOR EACH ROW
	EXECUTE FUNCTION phi3_fill('summary', 'Summarize: {body}');
	CREATE TRIGGER reports_fill BEFORE INSERT OR UPDATE ON reports_local FOR EACH ROW
	EXECUTE FUNCTION phi3_fill('summary', 'Summarize: {body}');
	INSERT INTO reports_local (id, body) $new_rows;
});
reset_stats();
$coord->safe_psql('postgres', "INSERT INTO reports (id, body) $new_rows");
my $inserted = rows_per_node('r.id > 100');
is(join(',', map { node_rows($_, 'phi3_fill') } @nodes),
	join(',', map { $inserted->{ $_->port } } @nodes),
	"phi3_fill ran on the node that stores each row ($inserted->{$w1->port} + $inserted->{$w2->port})");
is($coord->safe_psql('postgres', "$same WHERE id > 100"), '6/6',
	'the trigger on the shards gives the single-node values');

# ---- 3b. phi3_fill_async: queued on the node that stores the row, filled
# there by that node's background worker, as the table's owner
$coord->safe_psql('postgres', q{
	CREATE ROLE support;
	SET citus.shard_count = 4;
	CREATE TABLE tickets (id int PRIMARY KEY, body text, summary text);
	SELECT create_distributed_table('tickets', 'id');
	ALTER TABLE tickets OWNER TO support;
	CREATE TABLE tickets_local (id int PRIMARY KEY, body text, summary text);
	SET citus.enable_unsafe_triggers = on;
	CREATE TRIGGER tickets_fill AFTER INSERT OR UPDATE ON tickets FOR EACH ROW
	EXECUTE FUNCTION phi3_fill_async('summary', 'Summarize: {body}');
	CREATE TRIGGER tickets_fill AFTER INSERT OR UPDATE ON tickets_local FOR EACH ROW
	EXECUTE FUNCTION phi3_fill_async('summary', 'Summarize: {body}');
});
my $ticket_rows = q{SELECT i, 'Ticket ' || i || ': printer on floor ' || (i % 3) || ' jams.' FROM generate_series(1, 8) i};
$coord->safe_psql('postgres', "INSERT INTO tickets_local (id, body) $ticket_rows");
is($coord->safe_psql('postgres', 'SELECT phi3_async_wait(60)'), 't',
	'the plain copy is filled by the coordinator\'s worker (the single-node values)');
reset_stats();
# one INSERT on both workers: Citus commits it with PREPARE TRANSACTION and
# COMMIT PREPARED on each
$coord->safe_psql('postgres', "INSERT INTO tickets (id, body) $ticket_rows");
my $wait_all = q{SELECT string_agg(result, ',' ORDER BY nodeport)
                 FROM run_command_on_workers($$SELECT phi3_async_wait(60)$$)};
is($coord->safe_psql('postgres', $wait_all), 't,t',
	'phi3_async_wait through run_command_on_workers: both workers drained their queues');
my $tickets = rows_per_node('true', 'tickets');
is(join(',', map { node_rows($_, 'phi3_fill_async') } @nodes),
	join(',', map { $tickets->{ $_->port } } @nodes),
	"each node's worker generated the rows of its shards ($tickets->{$w1->port} + $tickets->{$w2->port})");
my $queue_sql = q{SELECT coalesce(string_agg(format('%s:%s/%s/%s/%s', regexp_replace(table_name::text, '\d+$', 'N'),
                    pending, running, done, failed), ',' ORDER BY table_name::text), '')
                  FROM phi3_queue_status WHERE table_name::text LIKE 'tickets%'};
is($coord->safe_psql('postgres', $queue_sql), 'tickets_local:0/0/8/0',
	'the coordinator\'s phi3_queue_status has none of the distributed table\'s items');
for my $w ($w1, $w2)
{
	my $status = $w->safe_psql('postgres', qq{SELECT sum(done) || '/' || sum(pending + running + failed)
		|| '/' || bool_and(table_name::text ~ '^tickets_[0-9]+\$') FROM phi3_queue_status});
	is($status, "$tickets->{$w->port}/0/true",
		$w->name . "'s phi3_queue_status: the rows of its shards, done, under the shards' names");
	is( $w->safe_psql('postgres', q{SELECT count(*) || '/' || count(DISTINCT key) || '/'
			|| bool_and(attempts = 1 AND outcome = 'filled') FROM phi3_queue_items}),
		"$tickets->{$w->port}/$tickets->{$w->port}/true", $w->name . ': each row filled once, at the first attempt');
}
my $same_t = q{SELECT count(*) FILTER (WHERE d.summary IS NOT DISTINCT FROM l.summary) || '/' || count(*)
               FROM tickets d JOIN tickets_local l USING (id)};
is($coord->safe_psql('postgres', $same_t), '8/8', 'the distributed values equal the single-node ones');
is($coord->safe_psql('postgres', 'SELECT count(DISTINCT summary) > 1 FROM tickets'), 't', 'texts of their own');

# the README's phi3_queue_status of the whole cluster, per distributed table
my $cluster_status = <<'SQL';
SELECT s.logicalrelid AS table_name, q.column_name, sum(q.pending) AS pending, sum(q.running) AS running,
       sum(q.done) AS done, sum(q.failed) AS failed, max(q.oldest_pending_age) AS oldest_pending_age
FROM run_command_on_all_nodes($$SELECT coalesce(json_agg(s), '[]') FROM phi3_queue_status s$$) r,
     json_to_recordset(r.result::json) AS q(table_name text, column_name name, pending bigint,
                                           running bigint, done bigint, failed bigint, oldest_pending_age interval)
JOIN pg_dist_shard s ON s.shardid = substring(q.table_name FROM '_(\d+)$')::bigint
GROUP BY 1, 2;
SQL
is($coord->safe_psql('postgres', $cluster_status), 'tickets|summary|0|0|8|0|',
	'phi3_queue_status of the whole cluster (the README\'s query): the 8 items of tickets, done');

# a one-node UPDATE (a plain commit on that node) is queued and filled there
my $three = rows_per_node('r.id = 3', 'tickets');
reset_stats();
$coord->safe_psql('postgres', 'UPDATE tickets SET summary = NULL WHERE id = 3');
is($coord->safe_psql('postgres', $wait_all), 't,t', 'a row set to NULL by an UPDATE is queued again');
is(join(',', map { node_rows($_, 'phi3_fill_async') } @nodes),
	join(',', map { $three->{ $_->port } } @nodes), 'and filled on the one node that holds it');
is($coord->safe_psql('postgres', $same_t), '8/8', 'with the same value');

# as the owner: an owner without UPDATE on the table cannot have a worker
# write its row (phi3.async_max_attempts = 1: the item fails at once)
$coord->safe_psql('postgres', q{REVOKE UPDATE ON tickets FROM support;
	INSERT INTO tickets VALUES (9, 'Ticket 9: no toner.', NULL)});
my $nine = rows_per_node('r.id = 9', 'tickets');
my ($w9) = grep { $nine->{ $_->port } } ($w1, $w2);
is($coord->safe_psql('postgres', $wait_all), 't,t', 'a row whose owner may not update the table: the wait ends');
like($w9->safe_psql('postgres', q{SELECT state || ': ' || last_error FROM phi3_queue_items WHERE key = '{9}'}),
	qr/^failed: permission denied for table tickets_\d+$/,
	'the item fails on the node of the row: the worker writes the shard as its owner');
$coord->safe_psql('postgres', 'GRANT UPDATE ON tickets TO support');
is( $coord->safe_psql('postgres', q{SELECT string_agg(result, ',' ORDER BY nodeport)
		FROM run_command_on_workers($$SELECT phi3_async_retry()$$)}),
	join(',', map { $nine->{ $_->port } } sort { $a->port <=> $b->port } ($w1, $w2)),
	'phi3_async_retry through run_command_on_workers');
is($coord->safe_psql('postgres', $wait_all), 't,t', 'and the wait');
is($coord->safe_psql('postgres', 'SELECT summary IS NOT NULL FROM tickets WHERE id = 9'), 't',
	'fill it once the owner has the right again');

# in a session of its own on a worker node (not one of Citus's), Citus hides
# the shards from pg_class; phi3_async_purge by the owner still finds the
# items of its shards
for my $w ($w1, $w2)
{
	my $done = $w->safe_psql('postgres', "SELECT count(*) FROM phi3_queue_items WHERE state = 'done'");
	is( $w->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname ~ '^tickets_[0-9]+$';
			SET ROLE support; SELECT phi3_async_purge()}),
		"0\n$done", $w->name . ": phi3_async_purge run there by the owner purges the $done done items of its shards");
}

# DROP TABLE on the coordinator drops the shards, and the event trigger on
# each worker deletes their items
$coord->safe_psql('postgres', 'DROP TABLE tickets');
is(join(',', map { $_->safe_psql('postgres', 'SELECT count(*) FROM phi3_async_queue') } ($w1, $w2)),
	'0,0', 'DROP TABLE leaves no queue item on the workers');

is(server_log_crashes($_), '', 'no backend crashed on ' . $_->name) for @nodes;
$_->stop for reverse @nodes;
done_testing();
