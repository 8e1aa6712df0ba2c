# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_credwatch_global_optspecs
    string join \n config= h/help V/version
end

function __fish_credwatch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_credwatch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_credwatch_using_subcommand
    set -l cmd (__fish_credwatch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c credwatch -n "__fish_credwatch_needs_command" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_needs_command" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_needs_command" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "run" -d 'Run the daemon until SIGINT or SIGTERM'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "migrate" -d 'Bring the database schema up to date (also done on every start)'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "config" -d 'Check the config file'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "key" -d 'Encryption keys'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "api-key" -d 'Keys for the platform\'s API'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "connection" -d 'Stored OAuth grants'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "pipeline" -d 'What reads or writes through connections, and how far it got'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "events" -d 'What the platform is told: the event log'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "webhooks" -d 'Webhook endpoints and their deliveries'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "providers" -d 'The catalog of providers credwatch knows (`[providers.X] preset = "ID"`)'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "check" -d 'Check connections now (refresh, probe, classify, record) and print what each check found. Exits 0 when the checks ran, whatever they found'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "sweep" -d 'Run one sweep now, as the daemon\'s scheduler would (every due connection, within the limits), print what it did, and exit'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "dev-provider" -d 'The development OAuth provider of `[dev_provider]` (config/dev.toml), served by the running daemon'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "completions" -d 'Print a shell\'s completion script for credwatch (the package installs them)'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "manpage" -d 'Print credwatch\'s man page (roff), made from this command line\'s own help'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "status" -d 'Every connection and pipeline with its health and state'
complete -c credwatch -n "__fish_credwatch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand run" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand run" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand run" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand migrate" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand migrate" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand migrate" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and not __fish_seen_subcommand_from check help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and not __fish_seen_subcommand_from check help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and not __fish_seen_subcommand_from check help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "check" -d 'Validate everything: syntax, keys, URLs, cron strings, files and key lengths'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and not __fish_seen_subcommand_from check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and __fish_seen_subcommand_from check" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and __fish_seen_subcommand_from check" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and __fish_seen_subcommand_from check" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "check" -d 'Validate everything: syntax, keys, URLs, cron strings, files and key lengths'
complete -c credwatch -n "__fish_credwatch_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and not __fish_seen_subcommand_from generate help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and not __fish_seen_subcommand_from generate help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and not __fish_seen_subcommand_from generate help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and not __fish_seen_subcommand_from generate help" -f -a "generate" -d 'Write a new random 32-byte key to PATH (never overwrites)'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and not __fish_seen_subcommand_from generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and __fish_seen_subcommand_from generate" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Write a new random 32-byte key to PATH (never overwrites)'
complete -c credwatch -n "__fish_credwatch_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and not __fish_seen_subcommand_from generate help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and not __fish_seen_subcommand_from generate help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and not __fish_seen_subcommand_from generate help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and not __fish_seen_subcommand_from generate help" -f -a "generate" -d 'Print a new random API key once, with the config lines that let it in. Only its SHA-256 goes into the config: the key itself is shown here and nowhere else'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and not __fish_seen_subcommand_from generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and __fish_seen_subcommand_from generate" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and __fish_seen_subcommand_from generate" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and __fish_seen_subcommand_from generate" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and __fish_seen_subcommand_from help" -f -a "generate" -d 'Print a new random API key once, with the config lines that let it in. Only its SHA-256 goes into the config: the key itself is shown here and nowhere else'
complete -c credwatch -n "__fish_credwatch_using_subcommand api-key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "add" -d 'Store a grant from an OAuth token response (JSON) read from FILE, or stdin with `-`; or, for a provider that takes keys or passwords, those (`--credentials`)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "list" -d 'One line per connection'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "show" -d 'Everything about one connection except its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "remove" -d 'Delete a connection and its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "reauth-link" -d 'Print a fresh reauthorize link, for helping an owner by hand'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "invite" -d 'Print a link that lets OWNER connect a new data source of PROVIDER (single use)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and not __fish_seen_subcommand_from add list show remove reauth-link invite help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l provider -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l name -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l owner -d 'Who authorized it; gets the e-mails' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l account -d 'The account it belongs to; by default learned as the provider\'s `account_from` says (the id_token\'s subject or verified e-mail, or a field of the probe\'s answer)' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l tokens -d 'For an OAuth provider. Never on the command line itself: every local user can read argv' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l credentials -d 'For a provider with `auth = "api_key"` ({"api_key": "…"}) or `"basic"` ({"username": "…", "password": "…"}), as JSON read from FILE or stdin' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -l allow-unknown-account -d 'Store it even though its account cannot be known. Its owner then cannot reauthorize it: a grant for another account could not be told apart'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from list" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from show" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from remove" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from remove" -l revoke -d 'First revoke its tokens at the provider (RFC 7009)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from reauth-link" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from reauth-link" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from reauth-link" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l provider -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l name -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l owner -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l account -d 'Only a grant for this account is accepted' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l external-id -d 'The platform\'s own id for the connection to be' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -l email -d 'E-mail the link to OWNER ("Connect your … account") instead of printing it; the running daemon sends it'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from invite" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "add" -d 'Store a grant from an OAuth token response (JSON) read from FILE, or stdin with `-`; or, for a provider that takes keys or passwords, those (`--credentials`)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "list" -d 'One line per connection'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "show" -d 'Everything about one connection except its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete a connection and its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "reauth-link" -d 'Print a fresh reauthorize link, for helping an owner by hand'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "invite" -d 'Print a link that lets OWNER connect a new data source of PROVIDER (single use)'
complete -c credwatch -n "__fish_credwatch_using_subcommand connection; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "add" -d 'Register a pipeline that depends on one or more connections'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "position" -d 'Report how far a pipeline got'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "pause" -d 'Pause a pipeline for the platform\'s own reasons (credwatch never lifts such a pause)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "resume" -d 'Lift the platform\'s pause (refused while one of its connections is broken)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "list" -d 'One line per pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "show" -d 'Everything about one pipeline, with its recent pauses and resumes'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "remove" -d 'Delete a pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and not __fish_seen_subcommand_from add position pause resume list show remove help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -l name -r
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -l connection -r
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -l position -d 'Its current ingestion position (opaque: cursor, offset, timestamp)' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from add" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from position" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from position" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from position" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from pause" -l reason -r
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from pause" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from resume" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from list" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from show" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from remove" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from remove" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "add" -d 'Register a pipeline that depends on one or more connections'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "position" -d 'Report how far a pipeline got'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Pause a pipeline for the platform\'s own reasons (credwatch never lifts such a pause)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Lift the platform\'s pause (refused while one of its connections is broken)'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "list" -d 'One line per pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "show" -d 'Everything about one pipeline, with its recent pauses and resumes'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Delete a pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand pipeline; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and not __fish_seen_subcommand_from list help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and not __fish_seen_subcommand_from list help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and not __fish_seen_subcommand_from list help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and not __fish_seen_subcommand_from list help" -f -a "list" -d 'Events in the order they happened, one JSON object per line (as the feed answers them)'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and not __fish_seen_subcommand_from list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -l after -d 'Only events after this one (an id such as evt_0000000000000042)' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -l type -d 'Only events of this type (repeatable)' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -l limit -d 'At most this many' -r
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "list" -d 'Events in the order they happened, one JSON object per line (as the feed answers them)'
complete -c credwatch -n "__fish_credwatch_using_subcommand events; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -f -a "status" -d 'Per endpoint: deliveries waiting, the oldest one\'s age, delivered, given up, last error'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -f -a "retry" -d 'Deliveries of ENDPOINT waiting for a retry, and those given up, are due now'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -f -a "replay" -d 'Sends ENDPOINT every event since TIME again (RFC 3339, or a duration ago such as 2h)'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and not __fish_seen_subcommand_from status retry replay help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from status" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from retry" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from retry" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from replay" -l since -r
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from replay" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from replay" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from replay" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "status" -d 'Per endpoint: deliveries waiting, the oldest one\'s age, delivered, given up, last error'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Deliveries of ENDPOINT waiting for a retry, and those given up, are due now'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "replay" -d 'Sends ENDPOINT every event since TIME again (RFC 3339, or a duration ago such as 2h)'
complete -c credwatch -n "__fish_credwatch_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -f -a "list" -d 'Every preset: what it covers and how its grants behave'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -f -a "show" -d 'One preset: every setting with the documentation page that states it, and what the provider\'s documentation does not confirm'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and not __fish_seen_subcommand_from list show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from list" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from show" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from show" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every preset: what it covers and how its grants behave'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from help" -f -a "show" -d 'One preset: every setting with the documentation page that states it, and what the provider\'s documentation does not confirm'
complete -c credwatch -n "__fish_credwatch_using_subcommand providers; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand check" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand check" -l all -d 'Check every connection, due or not'
complete -c credwatch -n "__fish_credwatch_using_subcommand check" -l json -d 'One JSON object per check'
complete -c credwatch -n "__fish_credwatch_using_subcommand check" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand check" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand sweep" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand sweep" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand sweep" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and not __fish_seen_subcommand_from revoke help" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and not __fish_seen_subcommand_from revoke help" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and not __fish_seen_subcommand_from revoke help" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and not __fish_seen_subcommand_from revoke help" -f -a "revoke" -d 'Revoke every live grant of a test account, as its owner would at a real provider; credwatch finds out at the connection\'s next check'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and not __fish_seen_subcommand_from revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and __fish_seen_subcommand_from revoke" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke every live grant of a test account, as its owner would at a real provider; credwatch finds out at the connection\'s next check'
complete -c credwatch -n "__fish_credwatch_using_subcommand dev-provider; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand completions" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand completions" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand completions" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand manpage" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand manpage" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand status" -l config -d 'The config file' -r -F
complete -c credwatch -n "__fish_credwatch_using_subcommand status" -l json -d 'Machine-readable output (the shape is documented in the README)'
complete -c credwatch -n "__fish_credwatch_using_subcommand status" -s h -l help -d 'Print help'
complete -c credwatch -n "__fish_credwatch_using_subcommand status" -s V -l version -d 'Print version'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "run" -d 'Run the daemon until SIGINT or SIGTERM'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "migrate" -d 'Bring the database schema up to date (also done on every start)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "config" -d 'Check the config file'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "key" -d 'Encryption keys'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "api-key" -d 'Keys for the platform\'s API'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "connection" -d 'Stored OAuth grants'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "pipeline" -d 'What reads or writes through connections, and how far it got'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "events" -d 'What the platform is told: the event log'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "webhooks" -d 'Webhook endpoints and their deliveries'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "providers" -d 'The catalog of providers credwatch knows (`[providers.X] preset = "ID"`)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "check" -d 'Check connections now (refresh, probe, classify, record) and print what each check found. Exits 0 when the checks ran, whatever they found'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "sweep" -d 'Run one sweep now, as the daemon\'s scheduler would (every due connection, within the limits), print what it did, and exit'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "dev-provider" -d 'The development OAuth provider of `[dev_provider]` (config/dev.toml), served by the running daemon'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "completions" -d 'Print a shell\'s completion script for credwatch (the package installs them)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "manpage" -d 'Print credwatch\'s man page (roff), made from this command line\'s own help'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "status" -d 'Every connection and pipeline with its health and state'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and not __fish_seen_subcommand_from run migrate config key api-key connection pipeline events webhooks providers check sweep dev-provider completions manpage status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "check" -d 'Validate everything: syntax, keys, URLs, cron strings, files and key lengths'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "generate" -d 'Write a new random 32-byte key to PATH (never overwrites)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from api-key" -f -a "generate" -d 'Print a new random API key once, with the config lines that let it in. Only its SHA-256 goes into the config: the key itself is shown here and nowhere else'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "add" -d 'Store a grant from an OAuth token response (JSON) read from FILE, or stdin with `-`; or, for a provider that takes keys or passwords, those (`--credentials`)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "list" -d 'One line per connection'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "show" -d 'Everything about one connection except its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "remove" -d 'Delete a connection and its tokens'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "reauth-link" -d 'Print a fresh reauthorize link, for helping an owner by hand'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from connection" -f -a "invite" -d 'Print a link that lets OWNER connect a new data source of PROVIDER (single use)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "add" -d 'Register a pipeline that depends on one or more connections'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "position" -d 'Report how far a pipeline got'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "pause" -d 'Pause a pipeline for the platform\'s own reasons (credwatch never lifts such a pause)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "resume" -d 'Lift the platform\'s pause (refused while one of its connections is broken)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "list" -d 'One line per pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "show" -d 'Everything about one pipeline, with its recent pauses and resumes'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from pipeline" -f -a "remove" -d 'Delete a pipeline'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from events" -f -a "list" -d 'Events in the order they happened, one JSON object per line (as the feed answers them)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "status" -d 'Per endpoint: deliveries waiting, the oldest one\'s age, delivered, given up, last error'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "retry" -d 'Deliveries of ENDPOINT waiting for a retry, and those given up, are due now'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "replay" -d 'Sends ENDPOINT every event since TIME again (RFC 3339, or a duration ago such as 2h)'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from providers" -f -a "list" -d 'Every preset: what it covers and how its grants behave'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from providers" -f -a "show" -d 'One preset: every setting with the documentation page that states it, and what the provider\'s documentation does not confirm'
complete -c credwatch -n "__fish_credwatch_using_subcommand help; and __fish_seen_subcommand_from dev-provider" -f -a "revoke" -d 'Revoke every live grant of a test account, as its owner would at a real provider; credwatch finds out at the connection\'s next check'
