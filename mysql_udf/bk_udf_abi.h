/*
 * bk_udf_abi.h
 *		The MariaDB server's UDF calling convention, written out by hand.
 *
 * The server does not install its own headers here (no libmariadbd-dev), and
 * Connector/C's mariadb_com.h carries an older UDF_ARGS/UDF_INIT without the
 * trailing members the 10.11 server passes.  Compiling against the wrong
 * layout would not fail: it would read garbage.  So this header states the
 * layout of MariaDB 10.11 (include/mysql_com.h) on x86_64 and the static
 * assertions below pin every offset, so a port to another ABI fails to build
 * instead of misreading the server's structures.
 */
#ifndef BK_UDF_ABI_H
#define BK_UDF_ABI_H

#include <stddef.h>

typedef char my_bool;

/* The type of an argument, as the server reports it in UDF_ARGS.arg_type. */
enum Item_result
{
	STRING_RESULT = 0,
	REAL_RESULT = 1,
	INT_RESULT = 2,
	ROW_RESULT = 3,
	DECIMAL_RESULT = 4
};

typedef struct UDF_ARGS
{
	unsigned int arg_count;           /* number of arguments */
	enum Item_result *arg_type;       /* type of each argument */
	char **args;                      /* values; NULL for SQL NULL or non-const
									   * ones at init time */
	unsigned long *lengths;           /* length of each string argument */
	char *maybe_null;                 /* 1 if the argument can be NULL */
	const char **attributes;          /* argument names (expression text) */
	unsigned long *attribute_lengths; /* their lengths */
	void *extension;
} UDF_ARGS;

typedef struct UDF_INIT
{
	my_bool maybe_null;       /* 1 if the function can return NULL */
	unsigned int decimals;    /* for REAL functions */
	unsigned long max_length; /* for STRING functions */
	char *ptr;                /* per-call state, ours to allocate and free */
	my_bool const_item;       /* 1 if the result is the same for every row */
	void *extension;
} UDF_INIT;

/*
 * What thd_kill_level() returns (include/mysql/service_kill_statement.h):
 * whether the statement was killed, and how.  KILL QUERY (HARD, the
 * default) asks to abort as soon as possible; max_statement_time
 * (KILL_TIMEOUT), KILL SOFT QUERY and LIMIT ROWS EXAMINED ask softly, "when
 * it leaves no table corrupted".  The older thd_killed() is true only for
 * the hard ones.
 */
enum thd_kill_levels
{
	THD_IS_NOT_KILLED = 0,
	THD_ABORT_SOFTLY = 50,
	THD_ABORT_ASAP = 100
};

/*
 * THD::variables.option_bits: set from LOCK TABLES to UNLOCK TABLES
 * (OPTION_TABLE_LOCK, sql/sql_priv.h, the same bit since MySQL 5.0), read
 * through the plugin API's thd_test_options().  thd_in_lock_tables() does
 * not tell it: it is THD::in_lock_tables, true only while the LOCK TABLES
 * statement itself opens its tables (0 afterwards, measured on 10.11).
 */
#define BK_OPTION_TABLE_LOCK (1ULL << 21)

/* Error number of ER_UNKNOWN_ERROR ("HY000"), the class of our SQL errors. */
#define BK_ER_UNKNOWN_ERROR 1105

#if defined(__x86_64__) && defined(__LP64__)
_Static_assert(sizeof(enum Item_result) == 4, "Item_result is an int");
_Static_assert(sizeof(enum thd_kill_levels) == 4, "thd_kill_levels is an int");
_Static_assert(offsetof(UDF_ARGS, arg_count) == 0, "UDF_ARGS.arg_count");
_Static_assert(offsetof(UDF_ARGS, arg_type) == 8, "UDF_ARGS.arg_type");
_Static_assert(offsetof(UDF_ARGS, args) == 16, "UDF_ARGS.args");
_Static_assert(offsetof(UDF_ARGS, lengths) == 24, "UDF_ARGS.lengths");
_Static_assert(offsetof(UDF_ARGS, maybe_null) == 32, "UDF_ARGS.maybe_null");
_Static_assert(offsetof(UDF_ARGS, attributes) == 40, "UDF_ARGS.attributes");
_Static_assert(offsetof(UDF_ARGS, attribute_lengths) == 48,
			   "UDF_ARGS.attribute_lengths");
_Static_assert(offsetof(UDF_ARGS, extension) == 56, "UDF_ARGS.extension");
_Static_assert(sizeof(UDF_ARGS) == 64, "UDF_ARGS size");
_Static_assert(offsetof(UDF_INIT, maybe_null) == 0, "UDF_INIT.maybe_null");
_Static_assert(offsetof(UDF_INIT, decimals) == 4, "UDF_INIT.decimals");
_Static_assert(offsetof(UDF_INIT, max_length) == 8, "UDF_INIT.max_length");
_Static_assert(offsetof(UDF_INIT, ptr) == 16, "UDF_INIT.ptr");
_Static_assert(offsetof(UDF_INIT, const_item) == 24, "UDF_INIT.const_item");
_Static_assert(offsetof(UDF_INIT, extension) == 32, "UDF_INIT.extension");
_Static_assert(sizeof(UDF_INIT) == 40, "UDF_INIT size");
#else
#error                                                                         \
	"bk_udf_abi.h states the x86_64 layout only: check include/mysql_com.h of the server and add this ABI"
#endif

#endif /* BK_UDF_ABI_H */
