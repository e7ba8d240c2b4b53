# The real Phoenix server of trio_phoenix's test suite (see README.md in this folder).
#
# With network access, `mix deps.get` fetches the dependencies from Hex as usual. Without it,
# point PHOENIX_DEPS at an unpacked copy of their sources (one folder per application) and
# every dependency becomes a path dependency.

defmodule PhoenixApp.OfflineSCM do
  @moduledoc false
  # Without Hex installed, Mix finds no SCM for the Hex-style requirements written inside the
  # dependencies' own mix.exs files ({:plug, "~> 1.14"}), even though the path dependencies
  # below override every one of them. This SCM accepts those entries and never fetches.
  @behaviour Mix.SCM

  @impl true
  def fetchable?, do: false
  @impl true
  def format(_opts), do: "offline"
  @impl true
  def format_lock(_opts), do: nil

  @impl true
  def accepts_options(_app, opts) do
    if Enum.any?([:path, :git, :github, :in_umbrella], &Keyword.has_key?(opts, &1)),
      do: nil,
      else: opts
  end

  @impl true
  def checked_out?(opts), do: File.dir?(opts[:dest])
  @impl true
  def lock_status(_opts), do: :ok
  @impl true
  def equal?(_opts1, _opts2), do: true
  @impl true
  def managers(_opts), do: []
  @impl true
  def checkout(opts), do: Mix.raise("#{opts[:dest]} cannot be fetched offline")
  @impl true
  def update(opts), do: checkout(opts)
end

defmodule PhoenixApp.MixProject do
  use Mix.Project

  @offline System.get_env("PHOENIX_DEPS")
  if @offline, do: Mix.SCM.append(PhoenixApp.OfflineSCM)

  def project do
    [
      app: :phoenix_app,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: true,
      deps: deps(@offline)
    ]
  end

  def application do
    [mod: {PhoenixApp.Application, []}, extra_applications: [:logger]]
  end

  @apps ~w(phoenix phoenix_pubsub phoenix_template plug plug_crypto mime telemetry websock
           websock_adapter bandit thousand_island hpax jason castore)a

  defp deps(nil) do
    [{:phoenix, "1.7.24"}, {:bandit, "1.11.1"}, {:jason, "~> 1.4"}]
  end

  defp deps(root) do
    for app <- @apps, do: {app, path: Path.join(root, Atom.to_string(app)), override: true}
  end
end
