# 010_stats.pl -- phi3_stats counts what ran, phi3_stat_activity shows it
# running.
#
# On a cluster with phi3 in shared_preload_libraries:
#   - after a reset, known calls (3 one-row summaries, a 4-row batch, a
#     cancelled generation) give exactly those counts of calls, rows,
#     generated tokens and cancels, and prompt tokens that include reused
#     ones;
#   - a second session watches a long batched UPDATE in phi3_stat_activity
#     (function, phase, rows done rising towards rows_total, tokens, speed),
#     and sees nothing once it ended;
#   - another role sees that backend's row without its details, unless it
#     has pg_read_all_stats; phi3_stats_reset is not for PUBLIC.
# Without preload the views are empty with a NOTICE saying why.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Phi3TAP;

my $tiny = model_path('tiny-a');
my $big = model_path('big');

# without preload: empty, and a NOTICE says why
{
	my $plain = new_node('plain', "phi3.model = '$tiny'");
	my ($ret, $out, $err) = $plain->psql('postgres', 'SELECT count(*) FROM phi3_stats');
	is($out, '0', 'without preload phi3_stats is empty');
	like($err, qr/phi3 statistics are not collected/, 'and a NOTICE says why');
	($ret, $out, $err) = $plain->psql('postgres', 'SELECT count(*) FROM phi3_stat_activity');
	is($out, '0', 'without preload phi3_stat_activity is empty');
	($ret, $out, $err) = $plain->psql('postgres', 'SELECT phi3_stats_reset()');
	like($err, qr/shared_preload_libraries/, 'phi3_stats_reset says preload is needed');
	$plain->stop;
}

my $node = new_node('main', "shared_preload_libraries = 'phi3'", "phi3.model = '$tiny'",
	'phi3.max_tokens_limit = 131072', 'phi3.max_context_size = 131072');

$node->safe_psql('postgres', 'SELECT phi3_stats_reset()');
$node->safe_psql('postgres', q{
	SELECT phi3_summarize('Report one about sales.', 5), phi3_summarize('Report two about costs.', 5),
	       phi3_summarize('Report three about hiring.', 5);
	SELECT phi3_summarize_batch(ARRAY['a b c', 'd e f', 'g h i', 'j k l'], 5);
	SELECT phi3_summarize('', 5);
});
my $row = $node->safe_psql('postgres', q{
	SELECT function, calls, rows, generated_tokens, prompt_tokens > reused_tokens, reused_tokens > 0,
	       errors, cancels, prefill_ms > 0, decode_ms > 0
	FROM phi3_stats ORDER BY function});
# 5 words allow 16 tokens; random weights never stop early
is( $row,
	"phi3_summarize|3|3|48|t|t|0|0|t|t\nphi3_summarize_batch|1|4|64|t|t|0|0|t|t",
	'phi3_stats counts the one-row calls and the batch (an empty document runs nothing)');

# a cancelled generation counts as a cancel
{
	my $s = Phi3TAP::Session->new($node);
	# 4000 tokens take many seconds on the tiny model (it does not stop early)
	$s->query_safe("SET statement_timeout = '300ms'; SET phi3.context_size = 4096");
	my $r = $s->query(q{SELECT length(phi3_complete('Once upon a time', 4000))}, 60);
	like($r->{stderr}, qr/57014/, 'a generation ended by statement_timeout');
	$s->quit;
	is($node->safe_psql('postgres',
			q{SELECT calls, cancels, errors FROM phi3_stats WHERE function = 'phi3_complete'}),
		'1|1|0', 'it is counted as a cancel');
}

# a second session watches a long batch
$node->safe_psql('postgres', qq{
	ALTER SYSTEM SET phi3.model = '$big';
	SELECT pg_reload_conf();
	CREATE TABLE reports (id int PRIMARY KEY, body text, summary text);
	INSERT INTO reports SELECT i, 'Report ' || i || ': sales rose in region ' || i, NULL
	FROM generate_series(1, 12) i;
	CREATE ROLE other LOGIN;
	CREATE ROLE reader LOGIN IN ROLE pg_read_all_stats;
});
my $monitor = Phi3TAP::Session->new($node);
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
$s->query_safe('SET phi3.batch_size = 4');
$s->send(q{SELECT cardinality(phi3_summarize_batch(ARRAY(SELECT body FROM reports ORDER BY id), 100))});
ok(wait_until_active($monitor, $s, '%phi3_summarize_batch%', 60), 'the batch is running');

my ($seen, $tokens_rose, $done_rose) = ('', 0, 0);
my ($last_tokens, $last_done) = (-1, -1);
my $deadline = time() + 90;
while (time() < $deadline && !$s->finished)
{
	my $r = $monitor->query_safe(
		"SELECT function, phase, rows_done, rows_total, tokens, tokens_per_second >= 0 FROM phi3_stat_activity WHERE pid = $pid");
	if ($r ne '')
	{
		my ($f, $phase, $done, $total, $tokens) = split /\|/, $r;
		$seen = "$f|$total" if $seen eq '';
		$tokens_rose = 1 if $last_tokens >= 0 && $tokens > $last_tokens;
		$done_rose = 1 if $last_done >= 0 && $done > $last_done;
		($last_tokens, $last_done) = ($tokens, $done);
	}
	last if $tokens_rose && $done_rose;
	Time::HiRes::sleep(0.2);
}
is($seen, 'phi3_summarize_batch|12', 'the monitor sees the function and the rows to do');
ok($tokens_rose, 'the token count rises while it runs');
ok($done_rose, 'the rows done rise while it runs');

# other roles: no details without pg_read_all_stats
my $other = $node->safe_psql('postgres',
	"SELECT function IS NULL, tokens IS NULL, pid = $pid FROM phi3_stat_activity WHERE pid = $pid",
	extra_params => [ '-U', 'other' ]);
is($other, 't|t|t', 'another role sees the row without its details') if $other ne '';
my $reader = $node->safe_psql('postgres',
	"SELECT function FROM phi3_stat_activity WHERE pid = $pid",
	extra_params => [ '-U', 'reader' ]);
is($reader, 'phi3_summarize_batch', 'pg_read_all_stats sees the details') if $reader ne '';
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT phi3_stats_reset()',
	extra_params => [ '-U', 'other' ]);
like($err, qr/permission denied/, 'phi3_stats_reset is not for PUBLIC');

my $r = $s->wait_result(180);
is($r->{stdout}, '12', 'the batch finished');
is($monitor->query_safe("SELECT count(*) FROM phi3_stat_activity WHERE pid = $pid"),
	'0', 'and no longer shows in phi3_stat_activity');
is($monitor->query_safe(
		q{SELECT calls, rows FROM phi3_stats WHERE function = 'phi3_summarize_batch'}),
	'2|16', 'phi3_stats counts the second batch');
$s->quit;
$monitor->quit;
is(server_log_crashes($node), '', 'no backend crashed');
$node->stop;
done_testing();
