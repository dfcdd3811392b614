"""Help texts of ``si`` and its fixed groups as click renders them: written by ``make si-help``
from si/cli.py, not by hand (tests/test_si_startup.py checks them against click)."""

TEXTS = {
    '': (
        'Usage: si [OPTIONS] COMMAND [ARGS]...\n'
        '\n'
        '  Run Scramjet-style sequences on Sequence Hub.\n'
        '\n'
        '  Example:\n'
        '    si seq pack examples/counter-js && si seq send - && si seq start - 3000 10 && si inst output -\n'
        '\n'
        'Options:\n'
        "  --format [pretty|json]  Output format (default: the profile's, usually\n"
        '                          pretty).\n'
        '  --api-url TEXT          Hub API URL for this command (default: SI_API_URL,\n'
        "                          the profile's apiUrl, or\n"
        '                          http://127.0.0.1:8000/api/v1).\n'
        '  -v, --version           Show the version and exit.\n'
        '  -h, --help              Show this message and exit.\n'
        '\n'
        'Commands:\n'
        '  completion  Print the shell completion script.\n'
        '  config      Show and change the client configuration and profiles.\n'
        '  hub         Run the embedded hub, or ask a hub about itself.\n'
        '  inst        Inspect, read and control instances.\n'
        '  instance    Inspect, read and control instances.\n'
        '  seq         Pack, send, start and manage sequences.\n'
        '  sequence    Pack, send, start and manage sequences.\n'
        '  topic       Write to, read from and manage topics.\n'
    ),
    'seq': (
        'Usage: si seq [OPTIONS] COMMAND [ARGS]...\n'
        '\n'
        '  Pack, send, start and manage sequences.  Example: si seq deploy\n'
        '  examples/counter-py 1 3\n'
        '\n'
        'Options:\n'
        '  -h, --help  Show this message and exit.\n'
        '\n'
        'Commands:\n'
        '  delete  Delete a sequence and its package.\n'
        '  deploy  Pack (if a directory), send and start in one step.\n'
        '  info    Show a sequence (package size and sha256 included).\n'
        '  list    List sequences, newest first, with their running instances.\n'
        '  ls      List sequences, newest first, with their running instances.\n'
        '  pack    Pack a sequence directory into a tar.gz.\n'
        '  prune   Delete every sequence (asks first).\n'
        '  rm      Delete a sequence and its package.\n'
        '  run     Pack (if a directory), send and start in one step.\n'
        "  send    Upload a package (or a directory, packed first); '-' is the...\n"
        '  start   Start an instance of a sequence with arguments.\n'
        "  use     Make a sequence the session's '-'.\n"
    ),
    'inst': (
        'Usage: si inst [OPTIONS] COMMAND [ARGS]...\n'
        '\n'
        '  Inspect, read and control instances.  Example: si inst output -\n'
        '\n'
        'Options:\n'
        '  -h, --help  Show this message and exit.\n'
        '\n'
        'Commands:\n'
        '  attach   Connect your terminal to the instance: stdin to its stdin, its...\n'
        '  event    Send events to an instance and read the events it emits.\n'
        "  health   Show the sequence's health check result.\n"
        '  info     Show an instance: status, args, appConfig, times, exit code...\n'
        "  input    Send data (a file, or stdin) to an instance's input.\n"
        '  kill     Kill an instance at once.\n'
        '  list     List instances, newest first (ended ones until they expire).\n'
        "  log      Print an instance's log, JSON lines (--follow to keep reading).\n"
        '  ls       List instances, newest first (ended ones until they expire).\n'
        "  output   Print an instance's output, following until it ends.\n"
        '  restart  Kill an instance and start its sequence again with the same...\n'
        "  stderr   Print an instance's stderr (--follow to keep reading).\n"
        "  stdin    Send data (a file, or stdin) to an instance's process stdin.\n"
        "  stdout   Print an instance's stdout (--follow to keep reading).\n"
        '  stop     Ask an instance to stop: its stop handlers run, then it ends...\n'
        "  use      Make an instance the session's '-'.\n"
    ),
    'topic': (
        'Usage: si topic [OPTIONS] COMMAND [ARGS]...\n'
        '\n'
        '  Write to, read from and manage topics.  Example: si topic get names\n'
        '\n'
        'Options:\n'
        '  -h, --help  Show this message and exit.\n'
        '\n'
        'Commands:\n'
        '  create  Create an empty topic of a type.\n'
        '  delete  Remove a topic and its data.\n'
        '  get     Print a topic from where its retained data begins, following...\n'
        '  list    List the topics.\n'
        '  ls      List the topics.\n'
        '  rm      Remove a topic and its data.\n'
        '  send    Send a file, or stdin as it comes, to a topic.\n'
    ),
    'config': (
        'Usage: si config [OPTIONS] COMMAND [ARGS]...\n'
        '\n'
        '  Show and change the client configuration and profiles.  Example: si config\n'
        '  set apiUrl http://127.0.0.1:8000/api/v1\n'
        '\n'
        'Options:\n'
        '  -h, --help  Show this message and exit.\n'
        '\n'
        'Commands:\n'
        "  print    Show the current profile's settings.\n"
        '  profile  Manage configuration profiles.\n'
        '  reset    Reset one setting (or all) of the current profile to its default.\n'
        '  set      Set one setting of the current profile.\n'
    ),
}
TEXTS['sequence'] = 'Usage: si sequence [OPTIONS] COMMAND [ARGS]...\n' + TEXTS['seq'].split('\n', 1)[1]
TEXTS['instance'] = 'Usage: si instance [OPTIONS] COMMAND [ARGS]...\n' + TEXTS['inst'].split('\n', 1)[1]
