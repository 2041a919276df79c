# 002_statement_timeout.pl -- statement_timeout during generation and
# during prompt evaluation, and pg_terminate_backend during generation.
#
#   - statement_timeout = 1s on a generation of 120000 tokens (hours of
#     work): the statement fails with the timeout error (57014) after about
#     a second, and the session then generates the same text as a fresh one
#   - statement_timeout = 1s on phi3_summarize of a document of about 30000
#     tokens: the error comes after about a second, long before the prompt
#     could have been evaluated (estimated from the measured evaluation
#     time of a slice of it), so the engine polls between the layers of the
#     prompt evaluation, not only between generated tokens
#   - pg_terminate_backend during a generation: the session ends with FATAL
#     57P01, the backend exits, the postmaster does not restart, and
#     another session (with the model open) is unaffected
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use Phi3TAP;

my $big = model_path('big');
my $node = new_node(
	'main',
	"phi3.model = '$big'",
	'phi3.max_tokens_limit = 131072',
	'phi3.max_context_size = 131072');

my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my $setup = 'SET phi3.context_size = 131072';
my $short = "SELECT phi3_complete('Once upon a time', 16)";
my $long = "SELECT length(phi3_complete('Once upon a time', 120000))";

my $monitor = Phi3TAP::Session->new($node);

# A bystander session, with the model open, gives the expected text
my $other = Phi3TAP::Session->new($node);
$other->query_safe($setup);
my $expected = $other->query_safe($short);
isnt($expected, '', 'a session generates text');

# ---- statement_timeout during generation ----
my $s = Phi3TAP::Session->new($node);
my $pid = $s->pid;
$s->query_safe($setup);
$s->query_safe("SET statement_timeout = '1s'");
my $r = $s->query($long, 60);
ok($r->{done}, 'generation: the statement ended');
like(
	$r->{stderr},
	qr/ERROR:\s+57014: canceling statement due to statement timeout/,
	'generation: the statement failed with the timeout error (57014)');
note sprintf('generation: statement ended after %.2f s', $r->{elapsed});
cmp_ok($r->{elapsed}, '>=', 0.9, 'generation: not before the timeout');
cmp_ok($r->{elapsed}, '<', 5, 'generation: within 4 s after the timeout');

$s->query_safe('RESET statement_timeout');
is($s->query_safe('SELECT pg_backend_pid()'), $pid, 'the same backend answers');
is($s->query_safe($short), $expected,
	'after the timeout the session generates the same text as another session');

# ---- statement_timeout during prompt evaluation ----
# A deterministic document of plain words (about 1.2 tokens per word)
my @words = qw(the database stores every order with its customer and the
  warehouse ships each parcel after the payment clears while the report
  counts late deliveries by region and month);
my $seed = 12345;
my @doc;
for my $i (1 .. 25000)
{
	$seed = ($seed * 1103515245 + 12345) % 2147483648;
	push @doc, $words[ $seed % @words ];
	push @doc, ".\n" if $i % 17 == 0;
}
my $doc = join(' ', @doc);
my $slice = join(' ', @doc[ 0 .. int(@doc / 64) ]);

my $t0 = time();
my $n_doc = $s->query_safe("SELECT phi3_token_count('$doc')");
note sprintf('the document has %d tokens (counted in %.2f s)', $n_doc, time() - $t0);
cmp_ok($n_doc, '>=', 25000, 'the document is long');
my $n_slice = $s->query_safe("SELECT phi3_token_count('$slice')");

# The time to evaluate the slice's prompt (the answer is at most 10 tokens)
$s->query_safe('SET phi3.context_size = 65536');
$r = $s->query("SELECT phi3_summarize('$slice', max_words => 1)", 120);
ok($r->{done} && $r->{stderr} eq '', 'summarizing a slice of the document works')
  or diag $r->{stderr};
my $estimate = $r->{elapsed} * $n_doc / $n_slice;
note sprintf('slice of %d tokens summarized in %.2f s; the whole document would take >= %.0f s',
	$n_slice, $r->{elapsed}, $estimate);

$s->query_safe("SET statement_timeout = '1s'");
$r = $s->query("SELECT phi3_summarize('$doc', max_words => 1)", 120);
ok($r->{done}, 'prompt: the statement ended');
like(
	$r->{stderr},
	qr/ERROR:\s+57014: canceling statement due to statement timeout/,
	'prompt: the statement failed with the timeout error (57014)');
note sprintf('prompt: statement ended after %.2f s', $r->{elapsed});
cmp_ok($r->{elapsed}, '<', 5, 'prompt: within 4 s after the timeout');
cmp_ok($estimate, '>', 3 * $r->{elapsed},
	'prompt: it ended long before the prompt could have been evaluated');
$s->query_safe('RESET statement_timeout');
$s->query_safe($setup);
is($s->query_safe($short), $expected,
	'after a timeout in prompt evaluation the session generates the same text');
$s->quit;

# ---- pg_terminate_backend during generation ----
my $victim = Phi3TAP::Session->new($node);
my $vpid = $victim->pid;
$victim->query_safe($setup);
$victim->send($long);
ok(wait_until_active($monitor, $victim, '%phi3_complete(%120000))%', 60),
	'terminate: the long generation is running');
ok(wait_cpu_seconds($vpid, 0.5, 60), 'terminate: the backend is computing')
  or die 'the generating backend does not compute';
my $t_term = time();
is($monitor->query_safe("SELECT pg_terminate_backend($vpid, 10000)"),
	't', 'terminate: the backend exited within 10 s of pg_terminate_backend');
$r = $victim->wait_result(30);
ok($r->{exited}, 'terminate: the session ended');
like(
	$r->{stderr},
	qr/FATAL:\s+57P01: terminating connection due to administrator command/,
	'terminate: the session got FATAL 57P01');
note sprintf('terminate: session ended %.3f s after the terminate', $r->{at} - $t_term);
cmp_ok($r->{at} - $t_term, '<', 5, 'terminate: within 5 s');

is($monitor->query_safe("SELECT count(*) FROM pg_stat_activity WHERE pid = $vpid"),
	'0', 'terminate: the backend is gone');
is($other->query_safe('SELECT pg_backend_pid()'), $other->pid,
	'terminate: the other session is still connected');
is($other->query_safe($short), $expected,
	'terminate: the other session still generates the same text');
my $fresh = Phi3TAP::Session->new($node);
$fresh->query_safe($setup);
is($fresh->query_safe($short), $expected, 'terminate: a new session generates the same text');
$fresh->quit;
$other->quit;
$monitor->quit;

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
is(server_log_crashes($node), '', 'the server log reports no crashed backend');

$node->stop;
done_testing();
