# 007_huge_input.pl -- documents far larger than the context.
#
# The tokenizer takes about 30 bytes of scratch memory per byte of text.  A
# generating function given a document of hundreds of megabytes (a text
# value may hold 1 GB) must therefore not tokenize it whole: that costs
# gigabytes in one backend, enough on many servers for the kernel's
# out-of-memory killer to kill it (and the postmaster then restarts every
# session), and minutes during which a cancel cannot act.  A prompt is only
# tokenized up to a bound of a few times the context; beyond it, the input
# is too long (an error) or its document is cut (phi3.input_overflow =
# truncate).
#
# Every generating path gets a 32 MB document, in both modes, each in a
# fresh session; each must end with the usual result (an "input is too
# long" error, or a truncated answer with its NOTICE) while the backend's
# peak memory (VmHWM) stays a small multiple of the document (tokenizing it
# whole took over 1 GB), and the server must not have restarted.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Phi3TAP;

my $model = model_path('tiny-a');
my $node = new_node('main', "phi3.model = '$model'", 'phi3.threads = 1');
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

my $mb = 32;
my $doc = "repeat('a', $mb * 1024 * 1024)";
my $limit_kb = 12 * $mb * 1024;

# Peak resident memory of a process, in kB.
sub vm_hwm
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or die "cannot read /proc/$pid/status: $!";
	while (<$fh>)
	{
		return $1 if /^VmHWM:\s+(\d+)\s+kB/;
	}
	die "no VmHWM in /proc/$pid/status";
}

$node->safe_psql('postgres',
	"CREATE TABLE docs (body text, summary text);\n"
	  . "CREATE TRIGGER docs_fill BEFORE INSERT ON docs FOR EACH ROW\n"
	  . "  EXECUTE FUNCTION phi3_fill('summary', 'Summarize: {body}')");

# [ label, overflow mode, statement, what its result must match ]
my $too_long = qr/54000: input is too long.*more than \d+ tokens/s;
my $truncated = qr/input truncated to fit the context.*Kept \d+ of more than \d+ tokens/s;
my @cases = (
	[ 'phi3_generate', 'error', "SELECT phi3_generate($doc, max_tokens => 4)", $too_long ],
	[ 'phi3_generate system', 'error',
		"SELECT phi3_generate('Hi', $doc, max_tokens => 4)", $too_long ],
	[ 'phi3_complete', 'error', "SELECT phi3_complete($doc, 4)", $too_long ],
	[ 'phi3_summarize', 'error', "SELECT phi3_summarize($doc)", $too_long ],
	[ 'phi3_describe', 'error',
		"SELECT phi3_describe(jsonb_build_object('text', $doc))", $too_long ],
	[ 'phi3_extract', 'error',
		"SELECT phi3_extract($doc, '{\"name\": \"text\"}')", $too_long ],
	[ 'phi3_fill', 'error', "INSERT INTO docs (body) VALUES ($doc)", $too_long ],
	[ 'phi3_generate', 'truncate',
		"SELECT length(phi3_generate($doc, max_tokens => 4)) > 0", $truncated ],
	[ 'phi3_complete', 'truncate', "SELECT length(phi3_complete($doc, 4)) > 0", $truncated ],
	[ 'phi3_summarize', 'truncate',
		"SELECT length(phi3_summarize(repeat('word ', $mb * 1024 * 1024 / 5), 5)) > 0",
		$truncated ],
	[ 'phi3_fill', 'truncate', "INSERT INTO docs (body) VALUES ($doc)", $truncated ]);

for my $c (@cases)
{
	my ($label, $mode, $sql, $want) = @$c;
	my $s = Phi3TAP::Session->new($node);
	my $r = $s->query("SET phi3.input_overflow = $mode;\n$sql", 300);

	ok($r->{done}, "$label ($mode): the statement ended");
	like($r->{stderr}, $want, "$label ($mode): the expected outcome");
	is($r->{stdout}, 't', "$label ($mode): an answer") if $mode eq 'truncate' && $sql =~ /^SELECT/;
	my $hwm = vm_hwm($s->pid);
	note sprintf('%s (%s): peak memory %.0f MB for a %d MB document, %.1f s',
		$label, $mode, $hwm / 1024, $mb, $r->{elapsed});
	cmp_ok($hwm, '<', $limit_kb, "$label ($mode): peak memory is a small multiple of the document");
	$s->quit;
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs'), '1',
	'the truncated row was inserted, the failed one was not');

is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$started, 'the postmaster did not restart');
is(server_log_crashes($node), '', 'no backend crashed');

done_testing();
