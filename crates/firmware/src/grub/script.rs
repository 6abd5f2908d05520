//! The grub script language, as far as a node's boot configuration uses it: words with
//! quoting and `$variable` expansion, `;`/newline lists, `if/elif/else/fi`, `!`,
//! `menuentry`/`submenu` blocks, and the commands that load and boot a kernel.
//!
//! What matters is what grub *measures* (grub 2.06 `script/execute.c` and `commands/tpm.c`):
//! every simple command it executes, after expansion, as `grub_cmd: <words joined by spaces>`
//! into PCR 8 (the digest covers the words, the event text adds the prefix and a NUL); every
//! file it opens into PCR 9; the kernel command line as `kernel_cmdline: …`. A bare
//! assignment `name=value` is not a command and is not measured. This module never touches
//! a file or a TPM: the [`GrubHost`] does.

use std::collections::BTreeMap;

/// The most commands one boot may execute (a `source` loop stops here, not the host).
pub const MAX_COMMANDS: usize = 10_000;
/// Deepest `source`/`configfile` nesting.
pub const MAX_DEPTH: usize = 16;
/// Deepest `if` nesting (parsing and running recurse per level; grub's own configs nest 2).
pub const MAX_NESTING: usize = 64;
/// Largest script accepted.
pub const MAX_SCRIPT: usize = 1 << 20;

/// What the script interpreter needs from the machine it runs on.
pub trait GrubHost {
    /// Whether a file or directory exists at a grub path (`(hd0,msdos1)/EFI/debian`).
    fn exists(&mut self, path: &str) -> bool;
    /// Read a file, measuring it into PCR 9 as grub's verifier does (the event text is
    /// `path` exactly as the command gave it).
    fn open(&mut self, path: &str) -> Result<Vec<u8>, String>;
    /// Measure a string into PCR 8: `kind` is `grub_cmd: ` or `kernel_cmdline: `.
    fn measure_string(&mut self, kind: &str, text: &str);
    /// `linux`: verify and load the kernel read from `path` (already measured into PCR 9),
    /// with its command line. An error stops the boot.
    fn load_kernel(&mut self, path: &str, image: &[u8], cmdline: &str) -> Result<(), String>;
    /// `initrd`: the initial ramdisk files (already measured into PCR 9).
    fn load_initrd(&mut self, files: &[(String, Vec<u8>)]) -> Result<(), String>;
    /// `boot`: hand over to the loaded kernel.
    fn boot(&mut self) -> Result<(), String>;
}

/// Why a script stopped without booting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("{file}:{line}: syntax error: {what}")]
    Syntax {
        file: String,
        line: usize,
        what: String,
    },
    #[error("grub: {0}")]
    Command(String),
    #[error("grub: more than {MAX_COMMANDS} commands executed (a loop?)")]
    TooManyCommands,
    #[error("grub: configuration files nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// One word as written: parts that expand (`$x`, `"…$x…"`) and parts that don't (`'…'`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

type Word = Vec<Part>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Command {
        words: Vec<Word>,
        line: usize,
    },
    If {
        branches: Vec<(Vec<Node>, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    /// `menuentry`/`submenu` WORDS { body }: the body is kept as source for later.
    Block {
        words: Vec<Word>,
        body: String,
        line: usize,
    },
}

/// Tokens: words (with their line) and separators.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(Word, usize),
    Separator,
    /// `{ … }` captured as raw text (menuentry bodies).
    Block(String, usize),
}

fn syntax(file: &str, line: usize, what: impl Into<String>) -> ScriptError {
    ScriptError::Syntax {
        file: file.to_string(),
        line,
        what: what.into(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Split a script into tokens (grub's lexer: quoting, escapes, comments, `{…}` blocks).
fn tokenize(file: &str, src: &str) -> Result<Vec<Token>, ScriptError> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0usize;
    let mut line = 1usize;
    let at = |i: usize| chars.get(i).copied();
    while let Some(c) = at(i) {
        match c {
            '\n' | ';' => {
                if c == '\n' {
                    line += 1;
                }
                tokens.push(Token::Separator);
                i += 1;
            }
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '{' => {
                let start_line = line;
                let mut depth = 0usize;
                let mut body = String::new();
                let mut quote: Option<char> = None;
                loop {
                    let Some(c) = at(i) else {
                        return Err(syntax(file, start_line, "unterminated {"));
                    };
                    i += 1;
                    if c == '\n' {
                        line += 1;
                    }
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '{') => {
                            depth += 1;
                            if depth == 1 {
                                continue;
                            }
                        }
                        (None, '}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    body.push(c);
                }
                tokens.push(Token::Block(body, start_line));
            }
            _ => {
                let word_line = line;
                let mut word: Word = Vec::new();
                let mut lit = String::new();
                while let Some(c) = at(i) {
                    match c {
                        ' ' | '\t' | '\r' | '\n' | ';' => break,
                        '{' if lit.is_empty() && word.is_empty() => break,
                        '\\' => {
                            i += 1;
                            match at(i) {
                                Some('\n') => line += 1,
                                Some(c) => lit.push(c),
                                None => {}
                            }
                            i += 1;
                        }
                        '\'' => {
                            i += 1;
                            let mut closed = false;
                            while let Some(c) = at(i) {
                                i += 1;
                                if c == '\'' {
                                    closed = true;
                                    break;
                                }
                                if c == '\n' {
                                    line += 1;
                                }
                                lit.push(c);
                            }
                            if !closed {
                                return Err(syntax(file, word_line, "unterminated '"));
                            }
                            // An empty '' still makes a word.
                            if lit.is_empty() && word.is_empty() {
                                word.push(Part::Literal(String::new()));
                            }
                        }
                        '"' => {
                            i += 1;
                            let mut closed = false;
                            let before = word.len();
                            while let Some(c) = at(i) {
                                match c {
                                    '"' => {
                                        i += 1;
                                        closed = true;
                                        break;
                                    }
                                    '\\' if matches!(at(i + 1), Some('"' | '\\' | '$')) => {
                                        if let Some(n) = at(i + 1) {
                                            lit.push(n);
                                        }
                                        i += 2;
                                    }
                                    '$' => i = dollar(&chars, i, &mut lit, &mut word),
                                    c => {
                                        if c == '\n' {
                                            line += 1;
                                        }
                                        lit.push(c);
                                        i += 1;
                                    }
                                }
                            }
                            if !closed {
                                return Err(syntax(file, word_line, "unterminated \""));
                            }
                            if lit.is_empty() && word.len() == before && word.is_empty() {
                                word.push(Part::Literal(String::new()));
                            }
                        }
                        '$' => i = dollar(&chars, i, &mut lit, &mut word),
                        c => {
                            lit.push(c);
                            i += 1;
                        }
                    }
                }
                flush(&mut lit, &mut word);
                tokens.push(Token::Word(word, word_line));
            }
        }
    }
    Ok(tokens)
}

/// End the literal run being collected, if any, as a part of `word`.
fn flush(lit: &mut String, word: &mut Word) {
    if !lit.is_empty() {
        word.push(Part::Literal(std::mem::take(lit)));
    }
}

/// At a `$`: push the variable it starts (or a literal `$`) and return the next index.
fn dollar(chars: &[char], i: usize, lit: &mut String, word: &mut Word) -> usize {
    let (name, next) = variable_at(chars, i);
    if name.is_empty() {
        lit.push('$');
        i + 1
    } else {
        flush(lit, word);
        word.push(Part::Variable(name));
        next
    }
}

/// `$name`, `${name}` or `$1`/`$?` starting at `chars[i] == '$'`: the name and the index
/// after it (an empty name when `$` starts no variable).
fn variable_at(chars: &[char], i: usize) -> (String, usize) {
    let mut j = i + 1;
    match chars.get(j) {
        Some('{') => {
            let mut name = String::new();
            j += 1;
            while let Some(&c) = chars.get(j) {
                j += 1;
                if c == '}' {
                    return (name, j);
                }
                name.push(c);
            }
            (String::new(), i + 1)
        }
        Some('?' | '#' | '@' | '*') => (
            chars.get(j).map(|c| c.to_string()).unwrap_or_default(),
            j + 1,
        ),
        _ => {
            let mut name = String::new();
            while let Some(&c) = chars.get(j) {
                if !is_name_char(c) {
                    break;
                }
                name.push(c);
                j += 1;
            }
            (name, j)
        }
    }
}

/// The literal text of a word when it has no variables (keywords are recognised only so).
fn literal(word: &Word) -> Option<String> {
    let mut s = String::new();
    for p in word {
        match p {
            Part::Literal(l) => s.push_str(l),
            Part::Variable(_) => return None,
        }
    }
    Some(s)
}

struct Parser<'a> {
    file: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// `if` statements open around the current position.
    nesting: usize,
}

impl Parser<'_> {
    fn peek_keyword(&self) -> Option<String> {
        match self.tokens.get(self.pos) {
            Some(Token::Word(w, _)) => literal(w),
            _ => None,
        }
    }

    fn line(&self) -> usize {
        match self.tokens.get(self.pos) {
            Some(Token::Word(_, l) | Token::Block(_, l)) => *l,
            _ => self
                .tokens
                .iter()
                .rev()
                .find_map(|t| match t {
                    Token::Word(_, l) | Token::Block(_, l) => Some(*l),
                    Token::Separator => None,
                })
                .unwrap_or(1),
        }
    }

    /// Parse statements until one of `stops` (a keyword at the start of a statement).
    fn list(&mut self, stops: &[&str]) -> Result<(Vec<Node>, Option<String>), ScriptError> {
        let mut nodes = Vec::new();
        loop {
            while matches!(self.tokens.get(self.pos), Some(Token::Separator)) {
                self.pos += 1;
            }
            let Some(token) = self.tokens.get(self.pos).cloned() else {
                return Ok((nodes, None));
            };
            if let Some(k) = self.peek_keyword() {
                if stops.contains(&k.as_str()) {
                    self.pos += 1;
                    return Ok((nodes, Some(k)));
                }
                if k == "if" {
                    if self.nesting >= MAX_NESTING {
                        return Err(syntax(
                            self.file,
                            self.line(),
                            format!("'if' nested more than {MAX_NESTING} deep"),
                        ));
                    }
                    self.pos += 1;
                    self.nesting += 1;
                    let node = self.if_statement();
                    self.nesting -= 1;
                    nodes.push(node?);
                    continue;
                }
                if matches!(k.as_str(), "while" | "until" | "for" | "function") {
                    return Err(syntax(
                        self.file,
                        self.line(),
                        format!("'{k}' is not supported by this boot emulation"),
                    ));
                }
            }
            match token {
                Token::Block(_, line) => {
                    return Err(syntax(self.file, line, "a { block without a command"))
                }
                Token::Separator => {}
                Token::Word(_, line) => {
                    let mut words = Vec::new();
                    let mut body = None;
                    while let Some(t) = self.tokens.get(self.pos) {
                        match t {
                            Token::Word(w, _) => words.push(w.clone()),
                            Token::Block(b, _) => body = Some(b.clone()),
                            Token::Separator => break,
                        }
                        self.pos += 1;
                        if body.is_some() {
                            break;
                        }
                    }
                    nodes.push(match body {
                        Some(body) => Node::Block { words, body, line },
                        None => Node::Command { words, line },
                    });
                }
            }
        }
    }

    fn expect_then(
        &mut self,
        cond: Vec<Node>,
        stop: Option<String>,
    ) -> Result<Vec<Node>, ScriptError> {
        if stop.as_deref() != Some("then") {
            return Err(syntax(self.file, self.line(), "'if' without 'then'"));
        }
        Ok(cond)
    }

    fn if_statement(&mut self) -> Result<Node, ScriptError> {
        let mut branches = Vec::new();
        let mut otherwise = Vec::new();
        let (cond, stop) = self.list(&["then"])?;
        let mut cond = self.expect_then(cond, stop)?;
        loop {
            let (body, stop) = self.list(&["elif", "else", "fi"])?;
            branches.push((cond, body));
            match stop.as_deref() {
                Some("elif") => {
                    let (c, stop) = self.list(&["then"])?;
                    cond = self.expect_then(c, stop)?;
                }
                Some("else") => {
                    let (body, stop) = self.list(&["fi"])?;
                    if stop.is_none() {
                        return Err(syntax(self.file, self.line(), "'if' without 'fi'"));
                    }
                    otherwise = body;
                    break;
                }
                Some(_) => break,
                None => return Err(syntax(self.file, self.line(), "'if' without 'fi'")),
            }
        }
        Ok(Node::If {
            branches,
            otherwise,
        })
    }
}

fn parse(file: &str, src: &str) -> Result<Vec<Node>, ScriptError> {
    if src.len() > MAX_SCRIPT {
        return Err(syntax(
            file,
            1,
            format!("script larger than {MAX_SCRIPT} bytes"),
        ));
    }
    let mut p = Parser {
        file,
        tokens: tokenize(file, src)?,
        pos: 0,
        nesting: 0,
    };
    let (nodes, stop) = p.list(&["fi", "then", "elif", "else"])?;
    if let Some(k) = stop {
        return Err(syntax(file, p.line(), format!("unexpected '{k}'")));
    }
    Ok(nodes)
}

/// A menu entry declared by the script, run by default when the script ends without
/// booting (grub's normal mode with the `default` entry and `timeout=0`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct MenuEntry {
    title: String,
    body: String,
}

/// Runs grub scripts against a host, as grub's normal mode does.
pub struct Interpreter<'h, H: GrubHost> {
    host: &'h mut H,
    vars: BTreeMap<String, String>,
    executed: usize,
    depth: usize,
    menu: Vec<MenuEntry>,
    kernel_loaded: bool,
    booted: bool,
}

enum Flow {
    Continue,
    /// `boot` succeeded: stop everything.
    Booted,
}

impl<'h, H: GrubHost> Interpreter<'h, H> {
    /// An interpreter with grub's start-up variables (`root`, `prefix`, `cmdpath`...).
    pub fn new(host: &'h mut H, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Interpreter {
            host,
            vars: vars.into_iter().collect(),
            executed: 0,
            depth: 0,
            menu: Vec::new(),
            kernel_loaded: false,
            booted: false,
        }
    }

    /// A variable's value (empty when unset).
    pub fn var(&self, name: &str) -> &str {
        self.vars.get(name).map(String::as_str).unwrap_or("")
    }

    /// Whether `boot` handed over to a kernel.
    pub fn booted(&self) -> bool {
        self.booted
    }

    /// Run a script (grub's embedded configuration, for example), then, as normal mode
    /// does, the default menu entry if the script declared entries and did not boot.
    pub fn run_config(&mut self, file: &str, src: &str) -> Result<(), ScriptError> {
        self.run_script(file, src)?;
        if !self.booted {
            self.run_default_entry()?;
        }
        Ok(())
    }

    fn run_default_entry(&mut self) -> Result<(), ScriptError> {
        if self.menu.is_empty() {
            return Ok(());
        }
        let default = self.var("default").to_string();
        let entry = default
            .parse::<usize>()
            .ok()
            .and_then(|i| self.menu.get(i))
            .or_else(|| self.menu.iter().find(|e| e.title == default))
            .or_else(|| self.menu.first())
            .cloned();
        let Some(entry) = entry else {
            return Ok(());
        };
        self.run_script(&format!("menuentry '{}'", entry.title), &entry.body)?;
        // After an entry's commands, normal mode boots what they loaded.
        if !self.booted && self.kernel_loaded {
            self.host.boot().map_err(ScriptError::Command)?;
            self.booted = true;
        }
        Ok(())
    }

    fn run_script(&mut self, file: &str, src: &str) -> Result<(), ScriptError> {
        if self.depth >= MAX_DEPTH {
            return Err(ScriptError::TooDeep);
        }
        let nodes = parse(file, src)?;
        self.depth += 1;
        let result = self.run_nodes(&nodes);
        self.depth -= 1;
        result.map(|_| ())
    }

    fn run_nodes(&mut self, nodes: &[Node]) -> Result<Flow, ScriptError> {
        for node in nodes {
            if let Flow::Booted = self.run_node(node)? {
                return Ok(Flow::Booted);
            }
        }
        Ok(Flow::Continue)
    }

    /// Run a condition list: its status is the last command's.
    fn run_condition(&mut self, nodes: &[Node]) -> Result<bool, ScriptError> {
        let mut status = true;
        for node in nodes {
            match node {
                Node::Command { words, .. } => status = self.command(words)?,
                other => {
                    if let Flow::Booted = self.run_node(other)? {
                        return Ok(true);
                    }
                    status = true;
                }
            }
        }
        Ok(status)
    }

    fn run_node(&mut self, node: &Node) -> Result<Flow, ScriptError> {
        match node {
            Node::Command { words, .. } => {
                self.command(words)?;
            }
            Node::If {
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    if self.run_condition(cond)? {
                        return self.run_nodes(body);
                    }
                }
                return self.run_nodes(otherwise);
            }
            Node::Block { words, body, .. } => {
                let args = self.expand_all(words);
                self.count()?;
                let cmd = args.first().map(String::as_str).unwrap_or("");
                // grub measures the block command with its arguments (the body is not
                // among them).
                self.host.measure_string("grub_cmd: ", &args.join(" "));
                match cmd {
                    "menuentry" | "submenu" => self.menu.push(MenuEntry {
                        title: args.get(1).cloned().unwrap_or_default(),
                        body: body.clone(),
                    }),
                    _ => {
                        return Err(ScriptError::Command(format!(
                            "'{cmd}' cannot take a {{ block }}"
                        )))
                    }
                }
            }
        }
        Ok(if self.booted {
            Flow::Booted
        } else {
            Flow::Continue
        })
    }

    fn count(&mut self) -> Result<(), ScriptError> {
        self.executed += 1;
        if self.executed > MAX_COMMANDS {
            return Err(ScriptError::TooManyCommands);
        }
        Ok(())
    }

    fn expand(&self, word: &Word) -> String {
        word.iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Variable(v) => self.var(v),
            })
            .collect()
    }

    fn expand_all(&self, words: &[Word]) -> Vec<String> {
        words.iter().map(|w| self.expand(w)).collect()
    }

    /// Execute one simple command; its status (true = success).
    fn command(&mut self, words: &[Word]) -> Result<bool, ScriptError> {
        let args = self.expand_all(words);
        let Some(name) = args.first().cloned() else {
            return Ok(true);
        };
        // `name=value` alone is an assignment, not a command (and is not measured).
        if args.len() == 1 {
            if let Some((var, value)) = name.split_once('=') {
                if !var.is_empty() && var.chars().all(is_name_char) {
                    self.vars.insert(var.to_string(), value.to_string());
                    return Ok(true);
                }
            }
        }
        self.count()?;
        self.host.measure_string("grub_cmd: ", &args.join(" "));
        let (invert, args) = match args.split_first() {
            Some((bang, rest)) if bang == "!" => (true, rest.to_vec()),
            _ => (false, args),
        };
        let status = self.builtin(&args)?;
        Ok(status != invert)
    }

    fn builtin(&mut self, args: &[String]) -> Result<bool, ScriptError> {
        let name = args.first().map(String::as_str).unwrap_or("");
        let rest = args.get(1..).unwrap_or_default();
        match name {
            "[" => {
                let Some((last, expr)) = rest.split_last() else {
                    return Err(ScriptError::Command("[: missing ]".into()));
                };
                if last != "]" {
                    return Err(ScriptError::Command("[: missing ]".into()));
                }
                Ok(self.test(expr))
            }
            "test" => Ok(self.test(rest)),
            "true" => Ok(true),
            "false" => Ok(false),
            "set" => {
                for a in rest {
                    match a.split_once('=') {
                        Some((k, v)) => {
                            self.vars.insert(k.to_string(), v.to_string());
                        }
                        None => {
                            self.vars.entry(a.clone()).or_default();
                        }
                    }
                }
                Ok(true)
            }
            "unset" => {
                for a in rest {
                    self.vars.remove(a);
                }
                Ok(true)
            }
            "source" | "configfile" | "." => {
                let path = rest
                    .first()
                    .ok_or_else(|| ScriptError::Command(format!("{name}: filename expected")))?;
                let bytes = self.host.open(path).map_err(ScriptError::Command)?;
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if name == "configfile" {
                    // A new menu context; variables are shared here (no export model).
                    let saved = std::mem::take(&mut self.menu);
                    self.run_script(path, &text)?;
                    if !self.booted {
                        self.run_default_entry()?;
                    }
                    self.menu = saved;
                } else {
                    self.run_script(path, &text)?;
                }
                Ok(true)
            }
            "search" | "search.file" => self.search(rest),
            "linux" | "linuxefi" => {
                let path = rest
                    .first()
                    .ok_or_else(|| ScriptError::Command("linux: filename expected".into()))?;
                let image = self.host.open(path).map_err(ScriptError::Command)?;
                let cmdline = rest.join(" ");
                self.host
                    .load_kernel(path, &image, &cmdline)
                    .map_err(ScriptError::Command)?;
                self.host.measure_string("kernel_cmdline: ", &cmdline);
                self.kernel_loaded = true;
                Ok(true)
            }
            "initrd" | "initrdefi" => {
                if !self.kernel_loaded {
                    return Err(ScriptError::Command(
                        "initrd: you need to load the kernel first".into(),
                    ));
                }
                let mut files = Vec::new();
                for path in rest {
                    files.push((
                        path.clone(),
                        self.host.open(path).map_err(ScriptError::Command)?,
                    ));
                }
                self.host
                    .load_initrd(&files)
                    .map_err(ScriptError::Command)?;
                Ok(true)
            }
            "boot" => {
                if !self.kernel_loaded {
                    return Err(ScriptError::Command(
                        "boot: you need to load the kernel first".into(),
                    ));
                }
                self.host.boot().map_err(ScriptError::Command)?;
                self.booted = true;
                Ok(true)
            }
            // Commands that change nothing a measurement depends on.
            "insmod"
            | "echo"
            | "load_video"
            | "gfxmode"
            | "terminal_output"
            | "terminal_input"
            | "serial"
            | "terminal"
            | "loadfont"
            | "set_background_image"
            | "export"
            | "sleep"
            | "savedefault"
            | "load_env"
            | "save_env"
            | "recordfail"
            | "gettext"
            | "play" => Ok(true),
            other => Err(ScriptError::Command(format!(
                "can't find command `{other}'"
            ))),
        }
    }

    /// `search --file|--fs-uuid|--label [--set[=VAR]] [--no-floppy] NAME`: the node has one
    /// disk with one partition, so only files can be found (on it).
    fn search(&mut self, args: &[String]) -> Result<bool, ScriptError> {
        let mut var = "root".to_string();
        let mut by_file = false;
        let mut target = None;
        let mut i = 0;
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "--file" | "-f" => by_file = true,
                "--fs-uuid" | "-u" | "--label" | "-l" | "--no-floppy" | "-n" => {}
                "--set" | "-s" => {
                    if let Some(v) = args.get(i + 1).filter(|v| !v.starts_with('-')) {
                        if args.len() > i + 2 {
                            var = v.clone();
                            i += 1;
                        }
                    }
                }
                s if s.starts_with("--set=") => var = s.trim_start_matches("--set=").to_string(),
                s if s.starts_with("--hint") => {
                    if !s.contains('=') {
                        i += 1;
                    }
                }
                s => target = Some(s.to_string()),
            }
            i += 1;
        }
        let Some(target) = target else {
            return Err(ScriptError::Command("search: one argument expected".into()));
        };
        let device = crate::grub::BOOT_DEVICE;
        if by_file && self.host.exists(&format!("({device}){target}")) {
            self.vars.insert(var, device.to_string());
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// grub's `test`: -z/-n STRING, -e/-f/-d PATH, = and !=, -a/-o, !, STRING.
    fn test(&mut self, expr: &[String]) -> bool {
        // -o binds loosest, then -a, then !, as in grub's test.c. Evaluated without recursion:
        // a hostile grub.cfg may chain any number of them.
        for alternative in expr.split(|a| a == "-o") {
            let mut all = true;
            for term in alternative.split(|a| a == "-a") {
                let bangs = term.iter().take_while(|a| *a == "!").count();
                let primary = term.get(bangs..).unwrap_or_default();
                if self.primary(primary) == bangs.is_multiple_of(2) {
                    continue;
                }
                all = false;
                break;
            }
            if all {
                return true;
            }
        }
        false
    }

    /// One primary of `test`: -z/-n STRING, -e/-f/-d/-s PATH, A = B, A != B, STRING.
    fn primary(&mut self, expr: &[String]) -> bool {
        match expr {
            [] => false,
            [op, s] if op == "-z" => s.is_empty(),
            [op, s] if op == "-n" => !s.is_empty(),
            [op, path] if op == "-e" || op == "-f" || op == "-d" || op == "-s" => {
                self.host.exists(path)
            }
            [a, op, b] if op == "=" || op == "==" => a == b,
            [a, op, b] if op == "!=" => a != b,
            [s] => !s.is_empty(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        files: BTreeMap<String, Vec<u8>>,
        log: Vec<String>,
    }

    impl GrubHost for Recorder {
        fn exists(&mut self, path: &str) -> bool {
            let p = path.trim_start_matches("(hd0,msdos1)");
            self.files
                .keys()
                .any(|f| f == p || f.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        }
        fn open(&mut self, path: &str) -> Result<Vec<u8>, String> {
            let p = path.trim_start_matches("(hd0,msdos1)");
            let data = self
                .files
                .get(p)
                .cloned()
                .ok_or(format!("file `{path}' not found"))?;
            self.log.push(format!("PCR9 {path}"));
            Ok(data)
        }
        fn measure_string(&mut self, kind: &str, text: &str) {
            self.log.push(format!("PCR8 {kind}{text}"));
        }
        fn load_kernel(&mut self, path: &str, _: &[u8], cmdline: &str) -> Result<(), String> {
            self.log.push(format!("kernel {path} [{cmdline}]"));
            Ok(())
        }
        fn load_initrd(&mut self, files: &[(String, Vec<u8>)]) -> Result<(), String> {
            self.log.push(format!("initrd {}", files.len()));
            Ok(())
        }
        fn boot(&mut self) -> Result<(), String> {
            self.log.push("boot".into());
            Ok(())
        }
    }

    const DEBIAN_EMBEDDED: &str = r#"if [ -z "$prefix" -o ! -e "$prefix" ]; then
	if ! search --file --set=root /.disk/info; then
		search --file --set=root /.disk/mini-info
	fi
	set prefix=($root)/boot/grub
fi
if [ -e $prefix/x86_64-efi/grub.cfg ]; then
	source $prefix/x86_64-efi/grub.cfg
elif [ -e $prefix/grub.cfg ]; then
	source $prefix/grub.cfg
else
	source $cmdpath/grub.cfg
fi
"#;

    fn run(files: &[(&str, &str)]) -> (Result<(), ScriptError>, Vec<String>) {
        let mut host = Recorder::default();
        for (p, c) in files {
            host.files.insert((*p).into(), c.as_bytes().to_vec());
        }
        let vars = [
            ("root", "hd0,msdos1"),
            ("prefix", "(hd0,msdos1)/EFI/debian"),
            ("cmdpath", "(hd0,msdos1)/EFI/BOOT"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let mut i = Interpreter::new(&mut host, vars);
        let r = i.run_config("(memdisk)/grub.cfg", DEBIAN_EMBEDDED);
        (r, host.log)
    }

    /// The sequence the real OVMF + shim + Debian grub boot measured
    /// (../shared/corpus/eventlogs/ovmf-debian12), for the lab's grub.cfg.
    #[test]
    fn debian_embedded_config_and_lab_grub_cfg() {
        let cfg =
            "set timeout=0\nlinux /vmlinuz console=ttyS0 panic=-1\ninitrd /initrd.img\nboot\n";
        let (r, log) = run(&[
            ("/EFI/debian/grub.cfg", cfg),
            ("/vmlinuz", "k"),
            ("/initrd.img", "i"),
        ]);
        r.unwrap();
        assert_eq!(
            log,
            [
                "PCR8 grub_cmd: [ -z (hd0,msdos1)/EFI/debian -o ! -e (hd0,msdos1)/EFI/debian ]",
                "PCR8 grub_cmd: [ -e (hd0,msdos1)/EFI/debian/x86_64-efi/grub.cfg ]",
                "PCR8 grub_cmd: [ -e (hd0,msdos1)/EFI/debian/grub.cfg ]",
                "PCR8 grub_cmd: source (hd0,msdos1)/EFI/debian/grub.cfg",
                "PCR9 (hd0,msdos1)/EFI/debian/grub.cfg",
                "PCR8 grub_cmd: set timeout=0",
                "PCR8 grub_cmd: linux /vmlinuz console=ttyS0 panic=-1",
                "PCR9 /vmlinuz",
                "kernel /vmlinuz [/vmlinuz console=ttyS0 panic=-1]",
                "PCR8 kernel_cmdline: /vmlinuz console=ttyS0 panic=-1",
                "PCR8 grub_cmd: initrd /initrd.img",
                "PCR9 /initrd.img",
                "initrd 1",
                "PCR8 grub_cmd: boot",
                "boot",
            ]
        );
    }

    #[test]
    fn menuentry_default_runs_after_the_script() {
        let cfg = "set default=0\nmenuentry 'Debian' --class debian {\n  linux /vmlinuz root=/dev/sda1\n  initrd /initrd.img\n}\n";
        let (r, log) = run(&[
            ("/EFI/debian/grub.cfg", cfg),
            ("/vmlinuz", "k"),
            ("/initrd.img", "i"),
        ]);
        r.unwrap();
        assert!(log.contains(&"PCR8 grub_cmd: menuentry Debian --class debian".to_string()));
        assert_eq!(log.last().map(String::as_str), Some("boot"));
        assert!(log.contains(&"PCR8 kernel_cmdline: /vmlinuz root=/dev/sda1".to_string()));
    }

    #[test]
    fn missing_kernel_and_bad_syntax_are_errors_not_panics() {
        let (r, _) = run(&[("/EFI/debian/grub.cfg", "linux /nope\nboot\n")]);
        assert!(matches!(r, Err(ScriptError::Command(m)) if m.contains("/nope")));
        for bad in [
            "if true; then\n",
            "fi\n",
            "echo 'open\n",
            "menuentry x {\n",
            "while true; do; done",
        ] {
            let (r, _) = run(&[("/EFI/debian/grub.cfg", bad)]);
            assert!(r.is_err(), "{bad:?}");
        }
        // A config that sources itself stops at the depth limit.
        let (r, _) = run(&[("/EFI/debian/grub.cfg", "source $prefix/grub.cfg\n")]);
        assert_eq!(r, Err(ScriptError::TooDeep));
    }

    /// Hostile configurations end in errors or answers, not in a stack overflow.
    #[test]
    fn deep_nesting_and_long_test_chains_are_bounded() {
        let deep = "if true; then\n".repeat(60_000);
        let (r, _) = run(&[("/EFI/debian/grub.cfg", &deep)]);
        assert!(matches!(r, Err(ScriptError::Syntax { what, .. }) if what.contains("nested")));
        let chain = format!("[ {} x ]\n", "! ".repeat(200_001));
        let (r, _) = run(&[("/EFI/debian/grub.cfg", &chain)]);
        assert!(r.is_ok(), "{r:?}");
        let ors = format!("[ {}x ]\nboot\n", "-z x -o ".repeat(100_000));
        let (r, log) = run(&[("/EFI/debian/grub.cfg", &ors)]);
        assert!(r.is_err(), "boot without a kernel fails");
        assert!(log
            .iter()
            .any(|l| l.starts_with("PCR8 grub_cmd: [ -z x -o")));
    }

    #[test]
    fn test_operators() {
        let cfg = "[ ! -z x -a -n x -o -z y ]\nlinux /vmlinuz\nif [ ! ! -z \"\" ]; then boot; fi\n";
        let (r, log) = run(&[("/EFI/debian/grub.cfg", cfg), ("/vmlinuz", "k")]);
        r.unwrap();
        assert_eq!(log.last().map(String::as_str), Some("boot"));
    }

    #[test]
    fn assignment_is_not_measured_and_quotes_expand() {
        let cfg = "x=/vmlinuz\nlinux \"$x\" 'a $b' \"c ${x}\"\nboot\n";
        let (r, log) = run(&[("/EFI/debian/grub.cfg", cfg), ("/vmlinuz", "k")]);
        r.unwrap();
        assert!(!log.iter().any(|l| l.contains("x=/vmlinuz")));
        assert!(log.contains(&"PCR8 grub_cmd: linux /vmlinuz a $b c /vmlinuz".to_string()));
    }
}
