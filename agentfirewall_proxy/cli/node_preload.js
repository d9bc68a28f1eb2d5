'use strict';
// Loaded by `tf run` through NODE_OPTIONS=--require: sends Node's HTTP clients through the
// TameFlare gateway named by HTTPS_PROXY/HTTP_PROXY; only the NO_PROXY hosts (the control
// plane) and the gateway itself are reached directly.
//
// 1. Node's `http`/`https` agents (http.globalAgent, https.globalAgent, `new http.Agent()`,
//    `new https.Agent()`, `agent: false`, and subclasses that reach Node's own connection code,
//    such as agentkeepalive's): what node-fetch, got, superagent and request use. Node 20 has
//    no proxy support of its own there (NODE_USE_ENV_PROXY came later), so the agents' shared
//    prototype is routed: an https:// request goes through a CONNECT tunnel to the gateway, an
//    http:// request is sent to the gateway as a proxy request (the target URL in the request
//    line, the agent's Proxy-Authorization), as curl and Python clients send it: after a
//    CONNECT the gateway expects TLS.
// 2. Node's global fetch (undici), which ignores the proxy variables in Node 20, and the
//    `undici` package's request/fetch: a global dispatcher with the same two rules, made from
//    the `undici` package's Agent when it resolves (from the project, or from TF_NODE_MODULES:
//    `.tf/node/node_modules`), otherwise from the undici bundled in Node. (undici's own
//    EnvHttpProxyAgent is not used: it sends http:// through a CONNECT tunnel too.)
// The gateway CA is trusted through NODE_EXTRA_CA_CERTS, which tf run also sets. What was
// installed is in globalThis[Symbol.for('tameflare.preload')] (`tf doctor` reads it).
(function installTameFlareProxy() {
  const proxy = process.env.HTTPS_PROXY || process.env.https_proxy ||
    process.env.HTTP_PROXY || process.env.http_proxy;
  if (!proxy) return;
  const net = require('net');
  const tls = require('tls');
  const { Duplex } = require('stream');
  const gateway = parseGateway(proxy);
  const installed = { agents: false, fetch: 'not routed' };
  globalThis[Symbol.for('tameflare.preload')] = installed;

  // Unreadable, it stops node (nothing may run unrouted), without showing it: it holds the key.
  function parseGateway(text) {
    try {
      const url = new URL(text);
      const auth = url.username
        ? 'Basic ' + Buffer.from(decodeURIComponent(url.username) + ':' +
          decodeURIComponent(url.password)).toString('base64')
        : null;
      const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
      return { host: bare(url.hostname), port, origin: url.origin, auth };
    } catch (_) {
      throw new Error('tf run: HTTPS_PROXY holds no URL: start the agent with `tf run` ' +
        'and keep the proxy variables it sets');
    }
  }

  function bare(host) {
    return String(host).replace(/^\[|\]$/g, '');
  }

  function authority(host, port, defaultPort) {
    const name = host.includes(':') ? '[' + host + ']' : host;
    return port === defaultPort ? name : name + ':' + port;
  }

  // NO_PROXY (tf run sets it to the control plane's host only): those hosts go direct, and so
  // does the gateway itself (a client that speaks to the proxy on its own, as axios does).
  const noProxy = (process.env.NO_PROXY || process.env.no_proxy || '').split(',')
    .map((entry) => entry.trim().toLowerCase().replace(/^\*?\./, '')).filter(Boolean);

  function bypassed(hostname, port) {
    const host = bare(hostname).toLowerCase();
    if (host === gateway.host.toLowerCase() && Number(port) === gateway.port) return true;
    return noProxy.some((entry) => host === entry || host.endsWith('.' + entry));
  }

  // A raw socket to `target` (host:port) through the gateway: CONNECT, then its 200.
  function connectThrough(target, callback) {
    const socket = net.connect(gateway.port, gateway.host);
    let settled = false;
    let buffer = Buffer.alloc(0);
    const fail = (err) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      callback(err, null);
    };
    socket.once('error', fail);
    socket.once('connect', () => {
      let head = 'CONNECT ' + target + ' HTTP/1.1\r\nHost: ' + target + '\r\n';
      if (gateway.auth) head += 'Proxy-Authorization: ' + gateway.auth + '\r\n';
      socket.write(head + '\r\n');
    });
    const onData = (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffer.length > 65536) fail(new Error('TameFlare gateway answer too long'));
        return;
      }
      socket.removeListener('data', onData);
      const status = Number(buffer.subarray(0, end).toString('latin1').split(' ')[1]);
      if (status !== 200) {
        const why = status === 407 ? ': the proxy credential in HTTPS_PROXY is not accepted ' +
          '(a `tf run` that ended, a rotated key): start the agent with `tf run`' : '';
        fail(new Error('the TameFlare gateway refused CONNECT ' + target + ': HTTP ' + status +
          why));
        return;
      }
      const rest = buffer.subarray(end + 4);
      if (rest.length) socket.unshift(rest);
      socket.removeListener('error', fail);
      settled = true;
      callback(null, socket);
    };
    socket.on('data', onData);
  }

  // ---- 1. Node's http/https agents -----------------------------------------------------

  // The tunnel as a stream that exists at once: an agent's createConnection must return its
  // socket (agentkeepalive's does), so TLS starts on this and is held until the CONNECT is
  // answered.
  class GatewayTunnel extends Duplex {
    constructor(target) {
      super();
      this.raw = null;
      this.held = null;
      this.refed = true;
      connectThrough(target, (err, raw) => this.opened(err, raw));
    }

    opened(err, raw) {
      if (err) return this.destroy(err);
      if (this.destroyed) return raw.destroy();
      this.raw = raw;
      let ended = false;
      raw.on('data', (chunk) => {
        if (!this.push(chunk)) raw.pause();
      });
      raw.on('end', () => {
        ended = true;
        this.push(null);
      });
      raw.on('error', (error) => this.destroy(error));
      raw.on('close', () => ended || this.destroy());
      if (!this.refed) raw.unref();
      raw.resume();
      const held = this.held;
      this.held = null;
      if (held) held();
    }

    _read() {
      if (this.raw) this.raw.resume();
    }

    _write(chunk, encoding, callback) {
      if (this.raw) this.raw.write(chunk, encoding, callback);
      else this.held = () => this._write(chunk, encoding, callback);
    }

    _final(callback) {
      if (!this.raw) this.held = () => this._final(callback);
      else if (this.raw.destroyed) callback();
      else this.raw.end(() => callback());
    }

    _destroy(err, callback) {
      if (this.raw) this.raw.destroy();
      callback(err);
    }

    setRef(on) {
      this.refed = on;
      if (this.raw) (on ? this.raw.ref() : this.raw.unref());
    }
  }

  function tunnelledTls(options) {
    const port = Number(options.port) || 443;
    const tunnel = new GatewayTunnel(authority(bare(options.host), port, -1));
    const socket = tls.connect({ ...options, socket: tunnel, path: undefined });
    // keep-alive pools unref idle sockets: the TCP connection is the tunnel's
    socket.ref = () => (tunnel.setRef(true), socket);
    socket.unref = () => (tunnel.setRef(false), socket);
    if (options.timeout) socket.setTimeout(options.timeout);
    return socket;
  }

  // A request head Node rendered already (headers given as an array, or Expect, which also
  // queues it to be written): edited where it waits, before any byte of it is sent.
  function editHead(req, edit) {
    const head = req._header;
    const next = edit(head);
    req._header = next;
    const queued = req._headerSent && req.outputData && req.outputData[0];
    if (queued && typeof queued.data === 'string' && queued.data.startsWith(head)) {
      queued.data = next + queued.data.slice(head.length);
      if (typeof req.outputSize === 'number') req.outputSize += next.length - head.length;
    }
  }

  // An http:// request as a proxy request: the target URL in its request line.
  function asProxyRequest(req, host, port) {
    if (/^[a-z][a-z\d+.-]*:\/\//i.test(req.path)) return; // already one (a proxy agent's)
    const url = 'http://' + authority(host, port, 80) + req.path;
    const line = req.method + ' ' + url + ' HTTP/1.1';
    if (req._header) editHead(req, (head) => line + head.slice(head.indexOf('\r\n')));
    req.path = url;
  }

  // The agent's Proxy-Authorization on a request known to go to the gateway (never before:
  // an agent with its own connection code would carry it elsewhere).
  function withCredential(req) {
    if (!gateway.auth) return;
    if (!req._header) {
      req.setHeader('Proxy-Authorization', gateway.auth);
      return;
    }
    editHead(req, (head) => {
      const lines = head.split('\r\n').filter((line, index) =>
        index === 0 || !/^proxy-authorization\s*:/i.test(line));
      lines.splice(lines.length - 2, 0, 'Proxy-Authorization: ' + gateway.auth);
      return lines.join('\r\n');
    });
  }

  // The agents' two methods every request passes: addRequest shapes an http:// request for the
  // gateway (it is still unwritten then); createConnection opens every connection to a host
  // that is not bypassed through the gateway, whoever asks for one.
  function routeNodeAgents() {
    const http = require('http');
    const https = require('https');
    const kRequest = Symbol('tameflare.request');

    function targetOf(agent, options) {
      if (!options || typeof options !== 'object' || options.socketPath) return null;
      const secure = (options.protocol || agent.protocol) === 'https:';
      const host = bare(options.host || options.hostname || 'localhost');
      const port = Number(options.port) || agent.defaultPort || (secure ? 443 : 80);
      return bypassed(host, port) ? null : { secure, host, port };
    }

    function routed(original) {
      return function createConnection(options, ...rest) {
        const target = targetOf(this, options);
        if (!target) return original.call(this, options, ...rest);
        if (target.secure) return tunnelledTls(options);
        // plain http: the gateway; a request addRequest did not shape is refused there
        if (options[kRequest]) withCredential(options[kRequest]);
        options[kRequest] = null; // (these options live as long as the socket)
        const socket = net.connect(gateway.port, gateway.host);
        if (options.timeout) socket.setTimeout(options.timeout);
        return socket;
      };
    }
    http.Agent.prototype.createConnection = routed(http.Agent.prototype.createConnection);
    https.Agent.prototype.createConnection = routed(https.Agent.prototype.createConnection);
    const ours = new Set([http.Agent.prototype.createConnection,
      https.Agent.prototype.createConnection]);

    const addRequest = http.Agent.prototype.addRequest;
    http.Agent.prototype.addRequest = function (req, options, port, localAddress) {
      if (typeof options === 'string') options = { host: options, port, localAddress }; // legacy
      const target = targetOf(this, options);
      if (!target || target.secure) return addRequest.call(this, req, options);
      if (req.method !== 'CONNECT') asProxyRequest(req, target.host, target.port);
      // the credential only where the connection is known to be ours (an agent with its own
      // connection code gets it in createConnection, if that is ours after all)
      if (ours.has(this.createConnection)) withCredential(req);
      return addRequest.call(this, req, { ...options, [kRequest]: req });
    };
    installed.agents = true;
  }

  // ---- 2. the global fetch (undici) ----------------------------------------------------

  const kGlobalDispatcher = Symbol.for('undici.globalDispatcher.1');

  // undici's Agent class: the project's `undici` package when it resolves (its own
  // `request`/`fetch` then meet a dispatcher of their version), else the one bundled in Node.
  function undiciAgent() {
    const paths = [process.cwd()];
    if (process.env.TF_NODE_MODULES) paths.push(process.env.TF_NODE_MODULES);
    try {
      const undici = require(require.resolve('undici', { paths }));
      const Agent = undici.Agent;
      if (typeof Agent === 'function') return { Agent, from: 'undici package' };
    } catch (_) { /* not installed: Node's own */ }
    fetch('data:,').catch(() => {}); // loads Node's bundled undici, which registers its Agent
    const current = globalThis[kGlobalDispatcher];
    return current && typeof current.constructor === 'function'
      ? { Agent: current.constructor, from: 'built-in undici' }
      : { Agent: null, from: 'not routed' };
  }

  function direct(host, port, https, opts, callback) {
    const socket = https
      ? tls.connect({ host, port, servername: opts.servername ||
        (net.isIP(host) ? undefined : host), ALPNProtocols: ['http/1.1'] })
      : net.connect(port, host);
    let settled = false;
    socket.once(https ? 'secureConnect' : 'connect', () => {
      if (!settled) { settled = true; callback(null, socket); }
    });
    socket.once('error', (err) => {
      if (!settled) { settled = true; socket.destroy(); callback(err, null); }
    });
  }

  // undici's connector: https:// through a CONNECT tunnel (an http:// origin that is not
  // bypassed never gets here: it goes to the gateway as a proxy request, below).
  function tunnelConnector(opts, callback) {
    const https = opts.protocol === 'https:';
    const host = bare(opts.hostname);
    const port = Number(opts.port) || (https ? 443 : 80);
    if (bypassed(host, port)) {
      direct(host, port, https, opts, callback);
      return;
    }
    if (!https) { // (dispatch sends these to the gateway as proxy requests: never here)
      callback(new Error('tf run: http://' + authority(host, port, 80) +
        ' is reached only through the TameFlare gateway, as a proxy request'), null);
      return;
    }
    connectThrough(authority(host, port, -1), (err, socket) => {
      if (err) return callback(err, null);
      const secure = tls.connect({
        socket,
        servername: opts.servername || (net.isIP(host) ? undefined : host),
        ALPNProtocols: ['http/1.1'],
      });
      let settled = false;
      secure.once('secureConnect', () => {
        if (!settled) { settled = true; callback(null, secure); }
      });
      secure.once('error', (error) => {
        if (!settled) { settled = true; secure.destroy(); callback(error, null); }
      });
    });
  }

  // An http:// request as a proxy request: to the gateway, its target URL in the request
  // line, its own Host, and the agent's Proxy-Authorization.
  function proxied(opts) {
    const target = new URL(opts.origin);
    const extra = { host: target.host };
    if (gateway.auth) extra['proxy-authorization'] = gateway.auth;
    const headers = [];
    const raw = opts.headers || [];
    const pairs = Array.isArray(raw)
      ? (raw.length && Array.isArray(raw[0]) ? raw : raw.reduce((all, item, index) =>
        (index % 2 ? all[all.length - 1].push(item) : all.push([item]), all), []))
      : Object.entries(raw);
    for (const [name, value] of pairs) {
      const lower = String(name).toLowerCase();
      if (lower !== 'host' && lower !== 'proxy-authorization') headers.push(name, value);
    }
    for (const [name, value] of Object.entries(extra)) headers.push(name, value);
    return { ...opts, origin: gateway.origin, path: target.origin + opts.path, headers };
  }

  function routeFetch() {
    if (typeof globalThis.fetch !== 'function') return;
    const { Agent, from } = undiciAgent();
    if (!Agent) return;
    const toProxy = new Agent();
    class TameFlareAgent extends Agent {
      dispatch(opts, handler) {
        const origin = opts.origin ? new URL(opts.origin) : null;
        if (origin && origin.protocol === 'http:' &&
            !bypassed(origin.hostname, Number(origin.port) || 80)) {
          return toProxy.dispatch(proxied(opts), handler);
        }
        return super.dispatch(opts, handler);
      }
    }
    globalThis[kGlobalDispatcher] = new TameFlareAgent({ connect: tunnelConnector });
    installed.fetch = from;
  }

  routeNodeAgents();
  routeFetch();
})();
